package config

// The coturn options (4.6 to 4.17, long_options in mainrelay.c) that the
// importer does not translate into an attribute, each with why. Every
// coturn option is in coturnHandlers, coturnUnsupported or coturnBuiltIn;
// TestCoturnOptionsCovered keeps it so.

const (
	whyNotImplemented = "not implemented in icegate"
	whyNoDatabase     = "a different design: icegate keeps no user database; static users go in auth.user blocks and an application server mints time-limited credentials with auth.secrets"
	whyNoAdmin        = "a different design: icegate has no admin shell or web console; use the Prometheus metrics, `icegate policy explain` and SIGHUP reloads"
	whyGoTLS          = "not needed: Go's TLS stack picks the protocol versions (1.2 and up), ciphers and curves"
	whySystemd        = "not needed: run icegate under systemd (or another supervisor) as its own user"
	whyLogs           = "not needed: icegate logs to standard error (journald under systemd); log.format = \"json\" for machines"
	whyThreads        = "not needed: icegate uses every CPU with Go's scheduler and SO_REUSEPORT sockets"
)

var coturnUnsupported = map[string]string{
	// Listeners and addresses.
	"listening-device":                  "not implemented in icegate (SO_BINDTODEVICE); listen on the device's address with listen.addresses",
	"relay-device":                      "not implemented in icegate (SO_BINDTODEVICE); bind relays to the device's address with relay.ipv4_bind",
	"alt-tls-listening-port":            "not implemented in icegate: RFC 5780 runs over UDP only (stun.alternate_port)",
	"tcp-proxy-port":                    whyNotImplemented + " (TURN behind a TCP proxy)",
	"aux-server":                        whyNotImplemented + " (auxiliary listeners): add the address to listen.addresses",
	"udp-self-balance":                  whyThreads,
	"relay-threads":                     whyThreads,
	"cpus":                              whyThreads,
	"alternate-server":                  whyNotImplemented + " (300 Try Alternate, RFC 8489 §10)",
	"tls-alternate-server":              whyNotImplemented + " (300 Try Alternate, RFC 8489 §10)",
	"tcp-alternate-server":              whyNotImplemented + " (300 Try Alternate, RFC 8489 §10)",
	"udp-alternate-server":              whyNotImplemented + " (300 Try Alternate, RFC 8489 §10)",
	"multiplex-peer":                    whyNotImplemented + " yet (every allocation has its own relay port)",
	"multiplex-peer-port":               whyNotImplemented + " yet (every allocation has its own relay port)",
	"multiplex-peer-max-peers":          whyNotImplemented + " yet (every allocation has its own relay port)",
	"keep-address-family":               "not needed: icegate follows RFC 8656 §7.2 (REQUESTED-ADDRESS-FAMILY, IPv4 when absent)",
	"allocation-default-address-family": "not needed: icegate follows RFC 8656 §7.2 (REQUESTED-ADDRESS-FAMILY, IPv4 when absent)",
	"no-udp-relay":                      "not supported: icegate always offers UDP relays (RFC 8656 requires them; browsers use nothing else)",
	"no-stun":                           "not supported: icegate always answers STUN Binding requests (rate-limited per source)",
	"server-relay":                      "not needed: a coturn-internal mode for servers behind other relays",
	"mobility":                          whyNotImplemented + " (RFC 8016 mobility tickets)",
	"rfc5780":                           "RFC 5780 needs a second IP address: set stun.alternate_address (see docs/config.md, `stun`)",
	"rfc3489-compatibility":             "RFC 3489 answers need RFC 5780's second address: set stun.alternate_address and stun.rfc3489 = true",
	"stun-backward-compatibility":       "RFC 3489 answers need RFC 5780's second address: set stun.alternate_address and stun.rfc3489 = true",
	"secure-stun":                       "not supported: STUN Binding needs no credentials in icegate (browsers never authenticate Binding requests)",
	"acme-redirect":                     whyNotImplemented + " (ACME HTTP-01 redirect); renew certificates with certbot: tls.cert_file is re-read when it changes",

	// Authentication and users.
	"userdb":                   whyNoDatabase,
	"db":                       whyNoDatabase,
	"sql-userdb":               whyNoDatabase,
	"psql-userdb":              whyNoDatabase,
	"mysql-userdb":             whyNoDatabase,
	"mongo-userdb":             whyNoDatabase,
	"redis-userdb":             whyNoDatabase,
	"secret-key-file":          whyNoDatabase + " (no encrypted passwords)",
	"oauth":                    whyNotImplemented + " (RFC 7635 third-party authorization)",
	"server-name":              "not needed: it names coturn's oAuth server",
	"no-auth-pings":            "not needed: it concerns coturn's database pings",
	"no-dynamic-ip-list":       "not needed: it concerns coturn's database",
	"no-dynamic-realms":        "not needed: icegate has one realm",
	"check-origin-consistency": whyNotImplemented + " (ORIGIN attribute checks); browsers do not send ORIGIN",
	"secret-ts-exp-time":       "not needed: a time-limited username carries its own expiry",
	"stale-nonce":              "not configurable: pion/turn makes and expires nonces itself, and answers a stale one with 438 (RFC 8489 §9.2.4)",
	"stateless-nonce":          "not configurable: pion/turn's nonces are its own",
	"stateless-nonce-secret":   "not configurable: pion/turn's nonces are its own",
	"channel-lifetime":         "not configurable: channels last 10 minutes (RFC 8656 §12)",
	"permission-lifetime":      "not configurable: permissions last 5 minutes (RFC 8656 §9)",
	"max-allocate-timeout":     "not configurable in icegate",
	"bps-capacity":             whyNotImplemented + " (a server-wide bandwidth cap); limits.bandwidth_per_allocation caps each allocation",
	"drain-min-allocations":    whyNotImplemented + " yet",

	// TLS.
	"pkey-pwd":        "not supported: icegate reads unencrypted PEM keys; decrypt it (openssl pkey -in KEY -out KEY.plain) and point tls.key_file at that",
	"cipher-list":     whyGoTLS,
	"ec-curve-name":   whyGoTLS,
	"dh-file":         whyGoTLS,
	"dh566":           whyGoTLS,
	"dh1066":          whyGoTLS,
	"no-sslv2":        whyGoTLS,
	"no-sslv3":        whyGoTLS,
	"no-tlsv1":        whyGoTLS,
	"no-tlsv1_1":      whyGoTLS,
	"no-tlsv1_2":      whyGoTLS + " (TLS 1.2 stays on: TURN clients need it)",
	"tlsv1":           whyGoTLS + " (TLS 1.0 is never offered)",
	"tlsv1_1":         whyGoTLS + " (TLS 1.1 is never offered)",
	"CA-file":         whyNotImplemented + " (client certificates)",
	"raw-public-keys": whyNotImplemented + " (RFC 7250 raw public keys)",
	"ne":              whyGoTLS,

	// Metrics and statistics.
	"prometheus-username-labels": "a different design: metrics labels are bounded (never a label per user or IP)",
	"prometheus-tls":             whyNotImplemented + " (metrics over TLS); keep metrics.listen on loopback or behind a proxy",
	"prometheus-cert":            whyNotImplemented + " (metrics over TLS); keep metrics.listen on loopback or behind a proxy",
	"prometheus-key":             whyNotImplemented + " (metrics over TLS); keep metrics.listen on loopback or behind a proxy",
	"redis-statsdb":              whyNotImplemented + " (statistics in Redis); scrape the Prometheus metrics",

	// Administration.
	"cli":                         whyNoAdmin,
	"cli-ip":                      whyNoAdmin,
	"cli-port":                    whyNoAdmin,
	"cli-password":                whyNoAdmin,
	"cli-max-output-sessions":     whyNoAdmin,
	"web-admin":                   whyNoAdmin,
	"web-admin-ip":                whyNoAdmin,
	"web-admin-port":              whyNoAdmin,
	"web-admin-listen-on-workers": whyNoAdmin,

	// Process and logging.
	"daemon":                   whySystemd,
	"pidfile":                  whySystemd,
	"proc-user":                whySystemd,
	"proc-group":               whySystemd,
	"log-file":                 whyLogs,
	"syslog":                   whyLogs,
	"syslog-facility":          whyLogs,
	"simple-log":               whyLogs,
	"no-stdout-log":            whyLogs,
	"new-log-timestamp":        whyLogs,
	"new-log-timestamp-format": whyLogs,
	"log-binding":              "not needed: icegate does not log each Binding request",
	"drop-invalid-packets-log": "not needed: invalid packets are counted in the metrics, never logged one by one",
	"udp-recvmmsg-log":         "not needed: icegate's event loops are described by their metrics",
	"udp-sendmmsg-log":         "not needed: icegate's event loops are described by their metrics",
	"version":                  "not needed: `icegate version` prints the version",
	"software-attribute":       "not configurable in icegate (the SOFTWARE attribute is its own choice)",
	"no-software-attribute":    "not configurable in icegate (the SOFTWARE attribute is its own choice)",
	"prod":                     "not configurable in icegate (the SOFTWARE attribute is its own choice)",
	"fingerprint":              "not configurable: pion/turn decides on FINGERPRINT (RFC 8489 §14.7)",
	"include-reason-string":    "not configurable: icegate's error responses are its own and pion/turn's",
	"respond-http-unsupported": "not needed: icegate's TURN ports do not answer HTTP; HTTP is on http.listen",
}

var coturnBuiltIn = map[string]string{
	"no-multicast-peers":                "icegate always denies multicast peers",
	"no-loopback-peers":                 "icegate denies loopback peers unless policy.presets has \"loopback\"",
	"no-cli":                            "icegate has no admin shell",
	"no-rfc5780":                        "RFC 5780 is off without stun.alternate_address",
	"response-origin-only-with-rfc5780": "icegate sends RESPONSE-ORIGIN only with RFC 5780 (stun.alternate_address)",
	"no-stun-backward-compatibility":    "RFC 3489 answers are off unless stun.rfc3489 = true",
	"rfc5766-channel-numbers":           "icegate accepts channel numbers 0x4000-0x7FFF (RFC 5766's range)",
	"udp-recvmmsg":                      "icegate reads and writes UDP in batches on Linux",
	"drop-invalid-packets":              "icegate drops invalid packets and counts them",
}
