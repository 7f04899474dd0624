// Package auth owns who may use the TURN relay and where the relay may send:
// long-term credentials (RFC 8489 §9.2) and the peer policy applied to
// CreatePermission and ChannelBind (RFC 8656 §9). It is pure computation:
// no sockets, no files, no logging. The turn package plugs it into pion, the
// config package builds it, and a reload swaps a new Policy in (the turn
// package holds it behind an atomic pointer) without touching a socket.
//
// # Credentials
//
// Two kinds of long-term credentials live side by side in a Credentials:
//
//   - static users, each with a password or a precomputed key
//     MD5(username ":" realm ":" password), the form coturn's
//     `turnadmin -k` prints as 0x followed by hex;
//   - time-limited credentials minted from shared secrets, exactly as
//     coturn's use-auth-secret / static-auth-secret (the "TURN REST API"
//     draft, draft-uberti-behave-turn-rest-00): the username carries an
//     expiry, the password is base64(HMAC-SHA1(secret, username)), and the
//     long-term key is derived from that password like any other. Several
//     secrets may be configured at once so they can be rotated; a request is
//     accepted if its MESSAGE-INTEGRITY matches the key of any of them.
//
// A static user is looked up first, so a static user whose name happens to
// look like a timestamp stays a static user.
//
// # Peer policy
//
// A Policy decides whether the relay may send to a peer address. It is
// secure by default: loopback, private, link-local, cloud metadata and other
// special-purpose ranges (BuiltinRules) are denied unless the operator
// allows them. Before deciding, every IPv4 address embedded in an IPv6
// address is extracted (IPv4-mapped, IPv4-compatible, NAT64, 6to4 and both
// Teredo addresses), because ::ffff:127.0.0.1, 64:ff9b::7f00:1 or a Teredo
// address can all end up at an IPv4 host the plain IPv4 rules protect
// (coturn 4.6.1 relays to ::ffff:127.0.0.1). A zone (fe80::1%eth0) is
// stripped first. Decide applies these steps in order; the first that
// matches decides:
//
//  1. Deny prefixes from the configuration: if the address or any IPv4
//     embedded in it matches, deny (rule "deny <prefix>"). The operator's
//     deny is absolute.
//  2. The server's own relay addresses: allow (rule "self"), so two clients
//     of one server can talk relay to relay.
//  3. Allow prefixes and presets from the configuration: if the address,
//     with an IPv4-mapped address compared as the IPv4 it maps, matches,
//     allow (rule "allow <prefix>" or "preset <name> <prefix>"). Only the
//     mapped form is unwrapped here: ::ffff:127.0.0.1 is the same socket
//     destination as 127.0.0.1, while 64:ff9b::7f00:1, a 6to4 or a Teredo
//     address is routed to a translator or relay somewhere else, so allowing
//     127.0.0.0/8 does not allow those; allow their prefix explicitly if a
//     lab needs it. Presets never admit a cloud-metadata address.
//  4. Built-in rules: deny if an embedded IPv4 matches a built-in IPv4
//     range (the decision names the rule and how it was embedded, e.g. rule
//     "loopback" via "nat64") or the address itself matches a built-in range.
//  5. Otherwise allow (rule "public").
//
// The zero netip.Addr is denied with rule "invalid".
package auth
