package config

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// ACME is tls.acme: certificates from an ACME CA (RFC 8555), obtained,
// stored and renewed by icegate itself and served by the TLS and DTLS
// listeners (and HTTPS with http.acme). The block is optional and absent
// from the embedded defaults; it excludes tls.cert_file and tls.key_file.
// Every attribute needs a restart.
type ACME struct {
	// Domains are the DNS names the certificate is for. Required, at
	// least one; the first also answers clients that send no SNI.
	Domains      []string  `hcl:"domains,optional"`
	DomainsRange hcl.Range `hcl:"domains,attr_range"`
	// Email is the ACME account's contact address, where the CA writes
	// about expiring certificates. Default "" (an account without one).
	Email      string    `hcl:"email,optional"`
	EmailRange hcl.Range `hcl:"email,attr_range"`
	// CA is the ACME directory URL. Default Let's Encrypt production,
	// "https://acme-v02.api.letsencrypt.org/directory".
	CA      string    `hcl:"ca,optional"`
	CARange hcl.Range `hcl:"ca,attr_range"`
	// CARoot is a PEM file of root certificates trusted for the CA's own
	// HTTPS, for a private CA; "" (the default) trusts the system's roots.
	CARoot      string    `hcl:"ca_root,optional"`
	CARootRange hcl.Range `hcl:"ca_root,attr_range"`
	// Storage is the directory the certificates, their keys and the ACME
	// account are kept in. Default "": $STATE_DIRECTORY/acme when systemd
	// sets STATE_DIRECTORY (the unit's StateDirectory, /var/lib/icegate),
	// else /var/lib/icegate/acme.
	Storage      string    `hcl:"storage,optional"`
	StorageRange hcl.Range `hcl:"storage,attr_range"`
	// Challenges are the ACME challenges offered: "tls-alpn-01" (RFC 8737,
	// answered on the TLS listener, or on tls_alpn_port for the length of
	// the challenge) and "http-01" (answered on http_listen). Default both.
	Challenges      []string  `hcl:"challenges,optional"`
	ChallengesRange hcl.Range `hcl:"challenges,attr_range"`
	// TLSALPNPort is the port the CA connects to for tls-alpn-01: 443 for a
	// public CA. When listen.tls_port (or http.listen with http.acme) is
	// this port, that listener answers; otherwise icegate binds it only
	// while a challenge runs. Default 443.
	TLSALPNPort      int       `hcl:"tls_alpn_port,optional"`
	TLSALPNPortRange hcl.Range `hcl:"tls_alpn_port,attr_range"`
	// HTTPListen is the host:port http-01 is answered on; the CA connects
	// to port 80. icegate binds it only while a challenge runs, unless
	// http.listen is the same address in plain HTTP, which then answers.
	// Default ":80".
	HTTPListen      string    `hcl:"http_listen,optional"`
	HTTPListenRange hcl.Range `hcl:"http_listen,attr_range"`
	// RenewalWindow is the share of a certificate's lifetime, counted back
	// from its expiry, in which it is renewed, between 0 and 1 (exclusive).
	// Default 0.3333 (a 90-day certificate is renewed 30 days before it
	// expires), unless the CA suggests a window (ACME Renewal Information).
	RenewalWindow      float64   `hcl:"renewal_window,optional"`
	RenewalWindowRange hcl.Range `hcl:"renewal_window,attr_range"`
	// CheckInterval is how often certificates are checked for renewal, at
	// least 1s. Default "10m".
	CheckInterval      string    `hcl:"check_interval,optional"`
	CheckIntervalRange hcl.Range `hcl:"check_interval,attr_range"`
	// DefRange is where the block starts, for a missing domains.
	DefRange hcl.Range `hcl:",def_range"`

	// Filled by Validate.
	// StorageDir is Storage, or its default.
	StorageDir            string
	CheckIntervalDuration time.Duration
}

// Defaults of the tls.acme block's optional attributes, applied by
// Validate since the block is not in the embedded defaults.
const (
	DefaultACMECA            = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultACMETLSALPNPort   = 443
	DefaultACMEHTTPListen    = ":80"
	DefaultACMERenewalWindow = 1.0 / 3
	DefaultACMECheckInterval = 10 * time.Minute
	// ACME challenge names, as RFC 8555 §8 and RFC 8737 spell them.
	ChallengeTLSALPN = "tls-alpn-01"
	ChallengeHTTP    = "http-01"
)

// DefaultACMEStorage is tls.acme.storage's default: under systemd's
// STATE_DIRECTORY when set, else under /var/lib/icegate.
func DefaultACMEStorage() string {
	if d, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); d != "" {
		return filepath.Join(d, "acme")
	}
	return "/var/lib/icegate/acme"
}

// HasChallenge reports whether challenge (ChallengeTLSALPN or
// ChallengeHTTP) is offered.
func (a *ACME) HasChallenge(challenge string) bool {
	return slices.Contains(a.Challenges, challenge)
}

func (a *ACME) validate(v *validator, t *TLS) {
	if len(a.Domains) == 0 {
		rng := a.DomainsRange
		if !v.wrote(rng) {
			rng = a.DefRange
		}
		v.errorf(rng, "tls.acme.domains", "missing; name the DNS names the certificate is for")
	}
	for _, d := range a.Domains {
		if err := checkACMEDomain(d); err != "" {
			v.errorf(a.DomainsRange, "tls.acme.domains", "%q %s", d, err)
		}
	}
	if t.CertFile != "" || t.KeyFile != "" {
		rng, field := t.CertFileRange, "tls.cert_file"
		if t.CertFile == "" {
			rng, field = t.KeyFileRange, "tls.key_file"
		}
		v.conflict(rng, field, "set together with tls.acme; the certificate comes from one or the other",
			a.DefRange, "tls.acme", "set together with "+field+"; remove one")
	}
	if a.Email != "" && !strings.Contains(a.Email, "@") {
		v.errorf(a.EmailRange, "tls.acme.email", "%q is not an email address", a.Email)
	}
	if a.CA == "" && !v.wrote(a.CARange) {
		a.CA = DefaultACMECA
	}
	if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
		v.errorf(a.CARange, "tls.acme.ca", "%q is not an https:// ACME directory URL", a.CA)
	}
	if a.CARoot != "" {
		if pem, err := readFile(a.CARoot); err != nil {
			v.errorf(a.CARootRange, "tls.acme.ca_root", "cannot read: %v", err)
		} else if !strings.Contains(string(pem), "-----BEGIN CERTIFICATE-----") {
			v.errorf(a.CARootRange, "tls.acme.ca_root", "%s holds no PEM certificate", a.CARoot)
		}
	}
	a.StorageDir = a.Storage
	if a.Storage == "" {
		if v.wrote(a.StorageRange) {
			v.errorf(a.StorageRange, "tls.acme.storage", "empty; leave it out for the default (%s)", DefaultACMEStorage())
		}
		a.StorageDir = DefaultACMEStorage()
	}
	if a.Challenges == nil && !v.wrote(a.ChallengesRange) {
		a.Challenges = []string{ChallengeTLSALPN, ChallengeHTTP}
	}
	if len(a.Challenges) == 0 {
		v.errorf(a.ChallengesRange, "tls.acme.challenges", "empty; offer %q, %q or both", ChallengeTLSALPN, ChallengeHTTP)
	}
	for _, c := range a.Challenges {
		if c != ChallengeTLSALPN && c != ChallengeHTTP {
			v.errorf(a.ChallengesRange, "tls.acme.challenges", "%q is not %q or %q (dns-01 is not supported)", c, ChallengeTLSALPN, ChallengeHTTP)
		}
	}
	if a.TLSALPNPort == 0 && !v.wrote(a.TLSALPNPortRange) {
		a.TLSALPNPort = DefaultACMETLSALPNPort
	}
	v.port(a.TLSALPNPort, a.TLSALPNPortRange, "tls.acme.tls_alpn_port")
	if a.HTTPListen == "" && !v.wrote(a.HTTPListenRange) {
		a.HTTPListen = DefaultACMEHTTPListen
	}
	if _, p, err := net.SplitHostPort(a.HTTPListen); err != nil {
		v.errorf(a.HTTPListenRange, "tls.acme.http_listen", "%q is not host:port: %v", a.HTTPListen, err)
	} else if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		v.errorf(a.HTTPListenRange, "tls.acme.http_listen", "%q: port %q is not 1-65535", a.HTTPListen, p)
	}
	if a.RenewalWindow == 0 && !v.wrote(a.RenewalWindowRange) {
		a.RenewalWindow = DefaultACMERenewalWindow
	}
	if a.RenewalWindow <= 0 || a.RenewalWindow >= 1 {
		v.errorf(a.RenewalWindowRange, "tls.acme.renewal_window", "%v is not between 0 and 1", a.RenewalWindow)
	}
	if a.CheckInterval == "" && !v.wrote(a.CheckIntervalRange) {
		a.CheckInterval = DefaultACMECheckInterval.String()
	}
	a.CheckIntervalDuration, _ = v.durationBetween(a.CheckInterval, a.CheckIntervalRange, "tls.acme.check_interval", time.Second, 24*time.Hour, "1s", "24h")
}

// checkACMEDomain says what is wrong with a tls.acme.domains entry, or "".
func checkACMEDomain(d string) string {
	switch {
	case d == "":
		return "is empty"
	case net.ParseIP(d) != nil:
		return "is an IP address; ACME here issues for DNS names"
	case strings.HasPrefix(d, "*."):
		return "is a wildcard, which needs dns-01 (not supported)"
	case strings.ContainsAny(d, " /:@") || strings.Contains(d, ".."):
		return "is not a DNS name"
	}
	return ""
}

// validateHTTPACME checks http.acme against tls.acme and http.cert_file.
func (c *Config) validateHTTPACME(v *validator) {
	h := c.HTTP
	if !h.ACME {
		return
	}
	switch {
	case c.TLS.ACME == nil:
		v.errorf(h.ACMERange, "http.acme", "true, but there is no tls.acme block to take the certificate from")
	case h.CertFile != "":
		v.conflict(h.ACMERange, "http.acme", "true while http.cert_file is set; HTTPS takes its certificate from one or the other",
			h.CertFileRange, "http.cert_file", "set while http.acme is true; remove one")
	case h.Listen == "":
		v.errorf(h.ACMERange, "http.acme", "true, but http.listen is empty (HTTP is off)")
	}
}
