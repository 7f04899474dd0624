# Imported from coturn's turnserver.conf by `icegate config import`.
# Each attribute names the turnserver.conf line it comes from; everything
# else keeps icegate's default (`icegate config default` lists them).
#
# Not carried over:
#   line 529: syslog: not needed: icegate logs to standard error (journald under systemd); log.format = "json" for machines
#
# Different in icegate:
#   no credentials in the file: icegate makes a secret at start and prints how to mint credentials with it (auth.ephemeral_secret); add auth.secrets or users
#
# Already icegate's behaviour:
#   line 779: no-rfc5780: RFC 5780 is off without stun.alternate_address
#   line 787: no-stun-backward-compatibility: RFC 3489 answers are off unless stun.rfc3489 = true
#   line 794: response-origin-only-with-rfc5780: icegate sends RESPONSE-ORIGIN only with RFC 5780 (stun.alternate_address)
