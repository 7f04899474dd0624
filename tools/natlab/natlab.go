// Package natlab is the NAT lab: network namespaces joined by veth pairs,
// a router that NATs with nftables in each of the RFC 4787 behaviours, and
// icegate and coturn's turnserver on a server host with two public
// addresses. Its test (natlab_test.go) proves that `icegate natcheck`
// classifies every simulated NAT, that coturn's turnutils_natdiscovery sees
// the same against icegate as against coturn, and that TURN works through
// each NAT. See README.md and docs/nat.md.
//
// The lab needs Linux, root, `ip` (iproute2), `nft` (nftables) and
// `conntrack`; without them it says so and skips, unless
// ICEGATE_REQUIRE_NATLAB=1, when it fails.
package natlab
