# Imported from coturn's turnserver.conf by `icegate config import`.
# Each attribute names the turnserver.conf line it comes from; everything
# else keeps icegate's default (`icegate config default` lists them).
#
# Not carried over:
#   line 529: syslog: not needed: icegate logs to standard error (journald under systemd); log.format = "json" for machines
#
# Different in icegate:
#   no credentials in the file: icegate makes a secret at start and prints how to mint credentials with it (auth.ephemeral_secret); add auth.secrets or users
#   private peers (RFC 1918): coturn relays to those denied-peer-ip does not name, icegate denies them unless policy.allow or policy.presets admit them (presets = ["lan"] on a LAN); `icegate policy explain IP` shows the decision
#   TCP relays (RFC 6062): coturn allows them unless no-tcp-relay, icegate only with relay.tcp = true (browsers never ask for them)
#   no cert/pkey: coturn serves no TLS without its certificate file, icegate serves TLS and DTLS with a self-signed certificate made at start (browsers refuse it for turns:); set tls.cert_file and tls.key_file, or listen.tls = false and listen.dtls = false
#
# Already icegate's behaviour:
#   line 779: no-rfc5780: RFC 5780 is off without stun.alternate_address
#   line 787: no-stun-backward-compatibility: RFC 3489 answers are off unless stun.rfc3489 = true
#   line 794: response-origin-only-with-rfc5780: icegate sends RESPONSE-ORIGIN only with RFC 5780 (stun.alternate_address)
