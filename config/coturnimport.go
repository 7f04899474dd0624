package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"

	"icegate/auth"
)

// CoturnNoteKind says what the importer did with a turnserver.conf line.
type CoturnNoteKind int

const (
	// CoturnUnsupported: the line is not carried over, and the note says
	// why (not implemented, not needed, or a different design).
	CoturnUnsupported CoturnNoteKind = iota
	// CoturnBuiltIn: icegate already behaves as the line asks; nothing is
	// written for it.
	CoturnBuiltIn
	// CoturnChanged: the line is carried over with a difference the
	// operator should know about.
	CoturnChanged
)

func (k CoturnNoteKind) String() string {
	switch k {
	case CoturnUnsupported:
		return "not carried over"
	case CoturnBuiltIn:
		return "already icegate's behaviour"
	default:
		return "different in icegate"
	}
}

// CoturnNote is one remark of ImportCoturn about the file. Its Text never
// holds a secret (a password, key, shared secret or database URL), so it
// may be printed and logged.
type CoturnNote struct {
	Kind CoturnNoteKind
	// Line is the 1-based line in turnserver.conf, 0 for the file as a whole.
	Line int
	// Option is the option name as written ("" for the file as a whole).
	Option string
	Text   string
}

// String renders the note as "line 12: mobility: not implemented: ...".
func (n CoturnNote) String() string {
	var b strings.Builder
	if n.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", n.Line)
	}
	if n.Option != "" {
		b.WriteString(safeName(n.Option))
		b.WriteString(": ")
	}
	b.WriteString(n.Text)
	return b.String()
}

// CoturnImport is what ImportCoturn makes of a turnserver.conf.
type CoturnImport struct {
	// HCL is an icegate config file: every option icegate supports,
	// each attribute with a comment naming its turnserver.conf line, and
	// the notes as comments at the top. It may carry secrets (users'
	// passwords, static-auth-secret), as the original does.
	HCL []byte
	// Notes hold every line that is not carried over as it was, in file
	// order, and remarks about the file as a whole (Line 0) first.
	Notes []CoturnNote
}

// ImportCoturn translates a coturn turnserver.conf (as coturn 4.6 to 4.17
// reads it) into an icegate config file. It is a pure function: it reads no
// file (cert and pkey are carried as paths) and never fails; what it cannot
// carry over is a note. The result is meant to pass Parse, and does for
// files that coturn itself accepts and whose values are inside icegate's
// bounds; callers run Parse on it to find out.
func ImportCoturn(src []byte) CoturnImport {
	im := &importer{set: map[string]*hclSetting{}}
	for _, o := range parseCoturn(src) {
		im.option(o)
	}
	im.finish()
	return CoturnImport{HCL: im.render(), Notes: im.sortedNotes()}
}

// hclSetting is one attribute of the output: an HCL literal per line it
// came from (lists have several).
type hclSetting struct {
	list  bool
	items []hclItem
}

type hclItem struct {
	lit    string // HCL literal: "\"x\"", 3478, true
	line   int
	option string
}

type addrLine struct {
	a    netip.Addr
	line int
	name string
}

type externalIP struct {
	pub, priv netip.Addr // priv invalid when not given
	line      int
	name      string
}

type importUser struct {
	name, password, key string
	line                int
}

type importer struct {
	notes []CoturnNote
	set   map[string]*hclSetting

	relayIPs       []addrLine
	listenIPs      []addrLine
	denies, allows []peerRangeLine
	externals      []externalIP
	users          []importUser
	secrets        []hclItem
	userLines      []coturnOption

	useAuthSecret, ltCredMech, noAuth, stunOnly bool
	maxLifetime                                 int // seconds, 0 when not set
	maxLifetimeLine                             int
	keyUsers                                    bool

	prometheus                     bool
	prometheusLine                 int
	prometheusAddr, prometheusPort string
	unauthRate, unauthRateLine     int
	realmSet                       bool
}

func (im *importer) note(k CoturnNoteKind, o coturnOption, format string, args ...any) {
	im.notes = append(im.notes, CoturnNote{Kind: k, Line: o.Line, Option: o.Name, Text: fmt.Sprintf(format, args...)})
}

// single sets a one-valued attribute; a later line replaces an earlier
// one, as in coturn, and a note says so.
func (im *importer) single(key, lit string, o coturnOption) {
	if s, ok := im.set[key]; ok && len(s.items) > 0 {
		im.note(CoturnChanged, o, "given again; this line replaces line %d, as in coturn", s.items[0].line)
	}
	im.set[key] = &hclSetting{items: []hclItem{{lit: lit, line: o.Line, option: o.Name}}}
}

func (im *importer) appendList(key, lit string, o coturnOption) {
	s := im.set[key]
	if s == nil {
		s = &hclSetting{list: true}
		im.set[key] = s
	}
	s.items = append(s.items, hclItem{lit: lit, line: o.Line, option: o.Name})
}

// flag reads a boolean option; a value coturn refuses is noted and ok is
// false.
func (im *importer) flag(o coturnOption) (b, ok bool) {
	b, ok = coturnBool(o.Value)
	if !ok {
		// The value is not repeated: a secret written in the wrong
		// place ("use-auth-secret=...") must not reach a log.
		im.note(CoturnUnsupported, o, "the value is not a boolean (on/off, yes/no, true/false, 1/0; coturn refuses to start); not carried over")
	}
	return b, ok
}

// number reads an integer option in [lo, hi]; out of it, it is noted.
func (im *importer) number(o coturnOption, lo, hi int) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(o.Value))
	switch {
	case o.Value == "":
		im.note(CoturnUnsupported, o, "needs a value; not carried over")
	case err != nil:
		im.note(CoturnUnsupported, o, "the value is not a number; not carried over")
	case n < lo || n > hi:
		im.note(CoturnUnsupported, o, "%d is outside %d-%d; not carried over", n, lo, hi)
	default:
		return n, true
	}
	return 0, false
}

func (im *importer) str(key string, o coturnOption) {
	if o.Value == "" {
		im.note(CoturnUnsupported, o, "needs a value; not carried over")
		return
	}
	if why := unwritable(o.Value); why != "" {
		im.note(CoturnUnsupported, o, "the value %s; not carried over", why)
		return
	}
	im.single(key, hclString(o.Value), o)
}

func (im *importer) port(key string, o coturnOption) {
	if n, ok := im.number(o, 1, 65535); ok {
		im.single(key, strconv.Itoa(n), o)
	}
}

// boolAttr writes a boolean attribute: value v when the flag is true,
// !v when it is given as false.
func (im *importer) boolAttr(key string, o coturnOption, whenTrue bool) {
	if b, ok := im.flag(o); ok {
		im.single(key, strconv.FormatBool(b == whenTrue), o)
	}
}

// ip parses an IP address option value; a host name or garbage is noted.
func (im *importer) ip(o coturnOption, s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		im.note(CoturnUnsupported, o, "%s is not an IP address (icegate takes addresses, not names); not carried over", quoteValue(s))
		return netip.Addr{}, false
	}
	if a.Is4In6() {
		a = a.Unmap()
	}
	return a, true
}

// option handles one line.
func (im *importer) option(o coturnOption) {
	if h, ok := coturnHandlers[o.Name]; ok {
		h(im, o)
		return
	}
	if why, ok := coturnUnsupported[o.Name]; ok {
		im.note(CoturnUnsupported, o, "%s", why)
		return
	}
	if why, ok := coturnBuiltIn[o.Name]; ok {
		im.note(CoturnBuiltIn, o, "%s", why)
		return
	}
	if strings.HasPrefix(o.Name, "-") {
		im.note(CoturnUnsupported, o, "coturn does not read command-line forms in its file (it logs \"Bad configuration format\" and goes on); write the name without dashes")
		return
	}
	im.note(CoturnUnsupported, o, "not a coturn option (coturn logs \"Bad configuration format\" and goes on); not carried over")
}

var coturnHandlers map[string]func(*importer, coturnOption)

func init() {
	coturnHandlers = map[string]func(*importer, coturnOption){
		"listening-port":     func(im *importer, o coturnOption) { im.port("listen.port", o) },
		"tls-listening-port": func(im *importer, o coturnOption) { im.port("listen.tls_port", o) },
		"alt-listening-port": func(im *importer, o coturnOption) {
			im.port("stun.alternate_port", o)
			im.note(CoturnChanged, o, "carried to stun.alternate_port, used only with stun.alternate_address (RFC 5780, a second IP address), which the import does not set")
		},
		"listening-ip": func(im *importer, o coturnOption) {
			a, ok := im.ip(o, o.Value)
			if !ok {
				return
			}
			lit := hclString(a.String())
			if s := im.set["listen.addresses"]; s != nil {
				for _, it := range s.items {
					if it.lit == lit {
						im.note(CoturnBuiltIn, o, "%s is already on line %d", a, it.line)
						return
					}
				}
			}
			im.appendList("listen.addresses", lit, o)
			im.listenIPs = append(im.listenIPs, addrLine{a: a, line: o.Line, name: o.Name})
		},
		"relay-ip": func(im *importer, o coturnOption) {
			if a, ok := im.ip(o, o.Value); ok {
				im.relayIPs = append(im.relayIPs, addrLine{a: a, line: o.Line, name: o.Name})
			}
		},
		"external-ip": func(im *importer, o coturnOption) {
			pub, priv, hasPriv := strings.Cut(o.Value, "/")
			e := externalIP{line: o.Line, name: o.Name}
			var ok bool
			if e.pub, ok = im.ip(o, strings.TrimSpace(pub)); !ok {
				return
			}
			if hasPriv {
				if e.priv, ok = im.ip(o, strings.TrimSpace(priv)); !ok {
					return
				}
				if e.priv.Is4() != e.pub.Is4() {
					im.note(CoturnUnsupported, o, "%s and %s are of different families; not carried over", e.pub, e.priv)
					return
				}
			}
			if e.pub.IsUnspecified() || e.pub.IsMulticast() {
				im.note(CoturnUnsupported, o, "%s cannot be advertised; not carried over", e.pub)
				return
			}
			im.externals = append(im.externals, e)
		},
		"min-port": func(im *importer, o coturnOption) {
			if n, ok := im.number(o, 0, 65535); ok {
				im.single("relay.min_port", strconv.Itoa(n), o)
			}
		},
		"max-port": func(im *importer, o coturnOption) {
			if n, ok := im.number(o, 0, 65535); ok {
				im.single("relay.max_port", strconv.Itoa(n), o)
			}
		},
		"realm": func(im *importer, o coturnOption) {
			im.str("realm", o)
			im.realmSet = im.set["realm"] != nil
		},
		"lt-cred-mech": func(im *importer, o coturnOption) {
			if b, ok := im.flag(o); ok && b {
				im.ltCredMech = true
				im.note(CoturnBuiltIn, o, "icegate always uses long-term credentials (RFC 8489 §9.2)")
			}
		},
		"no-auth": func(im *importer, o coturnOption) {
			if b, ok := im.flag(o); ok && b {
				im.noAuth = true
				im.note(CoturnChanged, o, "icegate never relays without credentials (an open relay is abused); with no secret and no user it makes a secret at start and prints how to mint credentials (auth.ephemeral_secret)")
			}
		},
		"use-auth-secret": func(im *importer, o coturnOption) {
			if b, ok := im.flag(o); ok && b {
				im.useAuthSecret = true
			}
		},
		"static-auth-secret": func(im *importer, o coturnOption) {
			if o.Value != "" {
				// coturn turns use-auth-secret on with it.
				im.useAuthSecret = true
			}
			switch {
			case o.Value == "":
				im.note(CoturnUnsupported, o, "needs a value; not carried over")
			case unwritable(o.Value) != "":
				im.note(CoturnUnsupported, o, "the secret %s; not carried over", unwritable(o.Value))
			default:
				for _, s := range im.secrets {
					if s.lit == hclString(o.Value) {
						im.note(CoturnBuiltIn, o, "the same secret as line %d", s.line)
						return
					}
				}
				im.secrets = append(im.secrets, hclItem{lit: hclString(o.Value), line: o.Line, option: o.Name})
			}
		},
		"user":               func(im *importer, o coturnOption) { im.userLines = append(im.userLines, o) },
		"rest-api-separator": func(im *importer, o coturnOption) { im.str("auth.separator", o) },
		"cert": func(im *importer, o coturnOption) {
			im.str("tls.cert_file", o)
			im.relativePath(o)
		},
		"pkey": func(im *importer, o coturnOption) {
			im.str("tls.key_file", o)
			im.relativePath(o)
		},
		"denied-peer-ip":  func(im *importer, o coturnOption) { im.peerRange("policy.deny", o) },
		"allowed-peer-ip": func(im *importer, o coturnOption) { im.peerRange("policy.allow", o) },
		"allow-loopback-peers": func(im *importer, o coturnOption) {
			if b, ok := im.flag(o); ok && b {
				im.appendList("policy.presets", `"loopback"`, o)
			} else if ok {
				im.note(CoturnBuiltIn, o, "loopback peers are denied by default")
			}
		},
		"no-udp":  func(im *importer, o coturnOption) { im.boolAttr("listen.udp", o, false) },
		"no-tcp":  func(im *importer, o coturnOption) { im.boolAttr("listen.tcp", o, false) },
		"no-tls":  func(im *importer, o coturnOption) { im.boolAttr("listen.tls", o, false) },
		"no-dtls": func(im *importer, o coturnOption) { im.boolAttr("listen.dtls", o, false) },
		"dtls":    func(im *importer, o coturnOption) { im.boolAttr("listen.dtls", o, true) },
		"no-tcp-relay": func(im *importer, o coturnOption) {
			im.boolAttr("relay.tcp", o, false)
		},
		"udp-gso": func(im *importer, o coturnOption) { im.boolAttr("listen.udp_segmentation", o, true) },
		"user-quota": func(im *importer, o coturnOption) {
			if n, ok := im.number(o, 0, 1<<31-1); ok {
				im.single("limits.allocations_per_user", strconv.Itoa(n), o)
			}
		},
		"total-quota": func(im *importer, o coturnOption) {
			if n, ok := im.number(o, 0, 1<<31-1); ok {
				im.single("limits.allocations_total", strconv.Itoa(n), o)
			}
		},
		"max-bps": func(im *importer, o coturnOption) {
			if n, ok := im.number(o, 0, 1<<31-1); ok {
				im.single("limits.bandwidth_per_allocation", strconv.Itoa(n), o)
			}
		},
		"max-allocate-lifetime": func(im *importer, o coturnOption) {
			n, ok := im.number(o, 1, 1<<31-1)
			if !ok {
				return
			}
			lo, hi := int(minLifetime/time.Second), int(maxLifetime/time.Second)
			if n < lo || n > hi {
				c := min(max(n, lo), hi)
				im.note(CoturnChanged, o, "%d s is outside icegate's %d s-%d s; written as %d s", n, lo, hi, c)
				n = c
			}
			im.single("limits.max_lifetime", hclString(strconv.Itoa(n)+"s"), o)
			im.maxLifetime, im.maxLifetimeLine = n, o.Line
		},
		"sock-buf-size": func(im *importer, o coturnOption) {
			if n, ok := im.number(o, 0, 1<<30); ok {
				im.single("listen.socket_buffer", strconv.Itoa(n), o)
			}
		},
		"unauthorized-ratelimit-rps": func(im *importer, o coturnOption) {
			if n, ok := im.number(o, 0, 1<<31-1); ok {
				im.single("limits.unauthenticated_rate", strconv.Itoa(n), o)
				im.unauthRate, im.unauthRateLine = n, o.Line
				im.note(CoturnChanged, o, "icegate limits every unauthenticated UDP request per source IP (coturn only its 401 answers), and TCP/TLS/DTLS per connection")
			}
		},
		"unauthorized-ratelimit": func(im *importer, o coturnOption) {
			if b, ok := im.flag(o); ok {
				if b {
					im.note(CoturnBuiltIn, o, "icegate always limits unauthenticated requests (limits.unauthenticated_rate)")
				} else {
					im.note(CoturnChanged, o, "icegate keeps its limit on unauthenticated requests (limits.unauthenticated_rate, 0 switches it off): it keeps the server from reflecting floods")
				}
			}
		},
		"stun-only": func(im *importer, o coturnOption) {
			if b, ok := im.flag(o); ok && b {
				im.stunOnly = true
				im.single("auth.ephemeral_secret", "false", o)
				im.note(CoturnChanged, o, "written as auth.ephemeral_secret = false with no secret and no user: TURN is refused, STUN Binding answered")
			}
		},
		"prometheus": func(im *importer, o coturnOption) {
			if b, ok := im.flag(o); ok {
				im.prometheus, im.prometheusLine = b, o.Line
			}
		},
		"prometheus-port": func(im *importer, o coturnOption) {
			if n, ok := im.number(o, 1, 65535); ok {
				im.prometheusPort = strconv.Itoa(n)
			}
		},
		"prometheus-address": func(im *importer, o coturnOption) {
			if a, ok := im.ip(o, o.Value); ok {
				im.prometheusAddr = a.String()
			}
		},
		"prometheus-path": func(im *importer, o coturnOption) {
			if o.Value != "/metrics" {
				im.note(CoturnUnsupported, o, "icegate serves metrics at /metrics only; point the scraper there")
			}
		},
		"verbose": func(im *importer, o coturnOption) {
			if b, ok := im.flag(o); ok && b {
				im.note(CoturnBuiltIn, o, "icegate's default log.level \"info\" logs what coturn's verbose does")
			}
		},
		"Verbose": func(im *importer, o coturnOption) {
			if b, ok := im.flag(o); ok && b {
				im.single("log.level", `"debug"`, o)
			}
		},
		"log-min-level": func(im *importer, o coturnOption) {
			lv := map[string]string{"debug": "debug", "info": "info", "warning": "warn", "error": "error"}[strings.ToLower(o.Value)]
			if lv == "" {
				im.note(CoturnUnsupported, o, "%s is not debug, info, warning or error (coturn ignores it too)", quoteValue(o.Value))
				return
			}
			im.single("log.level", hclString(lv), o)
		},
	}
}

// relativePath notes a relative certificate path: coturn looks for it
// next to the config file and in its own directories, icegate in its
// working directory.
func (im *importer) relativePath(o coturnOption) {
	if o.Value != "" && !strings.HasPrefix(o.Value, "/") {
		im.note(CoturnChanged, o, "a relative path: coturn looks it up next to turnserver.conf, icegate in its working directory (/ under systemd); write an absolute path")
	}
}

// peerRange translates coturn's "A-B" or "A" peer range into CIDRs.
func (im *importer) peerRange(key string, o coturnOption) {
	lo, hi, isRange := strings.Cut(o.Value, "-")
	a, ok := im.ip(o, strings.TrimSpace(lo))
	if !ok {
		return
	}
	b := a
	if isRange {
		if b, ok = im.ip(o, strings.TrimSpace(hi)); !ok {
			return
		}
	}
	if a.Zone() != "" || b.Zone() != "" {
		im.note(CoturnUnsupported, o, "%s has a zone; peer ranges cannot; not carried over", quoteValue(o.Value))
		return
	}
	if a.Is4() != b.Is4() || a.Compare(b) > 0 {
		im.note(CoturnUnsupported, o, "%s is not a range (its ends differ in family or are reversed; coturn matches nothing); not carried over", quoteValue(o.Value))
		return
	}
	r := peerRangeLine{lo: a, hi: b, line: o.Line, name: o.Name}
	if key == "policy.deny" {
		im.denies = append(im.denies, r)
	} else {
		im.allows = append(im.allows, r)
	}
}

// peerRangeLine is a denied-peer-ip or allowed-peer-ip range, lo <= hi,
// one family.
type peerRangeLine struct {
	lo, hi netip.Addr
	line   int
	name   string
}

// subtractRange returns pieces without the addresses of r; cut says
// whether any piece lost some.
func subtractRange(pieces []peerRangeLine, r peerRangeLine) (out []peerRangeLine, cut bool) {
	for _, pc := range pieces {
		if pc.lo.Is4() != r.lo.Is4() || r.hi.Less(pc.lo) || pc.hi.Less(r.lo) {
			out = append(out, pc)
			continue
		}
		cut = true
		if pc.lo.Less(r.lo) {
			out = append(out, peerRangeLine{lo: pc.lo, hi: r.lo.Prev()})
		}
		if r.hi.Less(pc.hi) {
			out = append(out, peerRangeLine{lo: r.hi.Next(), hi: pc.hi})
		}
	}
	return out, cut
}

// privateRanges are RFC 1918's, which coturn relays to unless
// denied-peer-ip says otherwise.
var privateRanges = []peerRangeLine{
	{lo: netip.MustParseAddr("10.0.0.0"), hi: netip.MustParseAddr("10.255.255.255")},
	{lo: netip.MustParseAddr("172.16.0.0"), hi: netip.MustParseAddr("172.31.255.255")},
	{lo: netip.MustParseAddr("192.168.0.0"), hi: netip.MustParseAddr("192.168.255.255")},
}

// finishPolicy writes the peer ranges as CIDRs. coturn checks
// allowed-peer-ip first (good_peer_addr in ns_turn_server.c), so there an
// allowed address inside a denied range is allowed; in icegate deny wins
// over allow. So each denied range is written without the allowed ranges
// it holds.
func (im *importer) finishPolicy() {
	write := func(key string, r peerRangeLine, pieces []peerRangeLine) {
		o := coturnOption{Line: r.line, Name: r.name}
		n := 0
		for _, pc := range pieces {
			for _, p := range rangeToPrefixes(pc.lo, pc.hi) {
				n++
				if p.Bits() == p.Addr().BitLen() {
					im.appendList(key, hclString(p.Addr().String()), o)
				} else {
					im.appendList(key, hclString(p.String()), o)
				}
			}
		}
		if n > 1 {
			im.note(CoturnChanged, o, "%s-%s is written as %d CIDRs", r.lo, r.hi, n)
		}
	}
	for _, r := range im.allows {
		write("policy.allow", r, []peerRangeLine{r})
	}
	// Where coturn relays to private peers, icegate does not: say so.
	open := privateRanges
	for _, r := range im.denies {
		open, _ = subtractRange(open, r)
	}
	for _, r := range im.allows {
		open, _ = subtractRange(open, r)
	}
	if len(open) > 0 {
		im.notes = append(im.notes, CoturnNote{Kind: CoturnChanged,
			Text: "private peers (RFC 1918): coturn relays to those denied-peer-ip does not name, icegate denies them unless policy.allow or policy.presets admit them (presets = [\"lan\"] on a LAN); `icegate policy explain IP` shows the decision"})
	}
	for _, r := range im.denies {
		pieces := []peerRangeLine{r}
		var cut []int
		for _, al := range im.allows {
			var didCut bool
			pieces, didCut = subtractRange(pieces, al)
			if didCut {
				cut = append(cut, al.line)
			}
		}
		if len(cut) > 0 {
			lines := make([]string, len(cut))
			for i, l := range cut {
				lines[i] = strconv.Itoa(l)
			}
			o := coturnOption{Line: r.line, Name: r.name}
			if len(pieces) == 0 {
				im.note(CoturnChanged, o, "not written: allowed-peer-ip (line %s) covers it, and coturn lets allowed-peer-ip win", strings.Join(lines, ", "))
				continue
			}
			im.note(CoturnChanged, o, "written without the addresses of allowed-peer-ip (line %s): coturn lets allowed-peer-ip win over denied-peer-ip, icegate lets deny win", strings.Join(lines, ", "))
		}
		write("policy.deny", r, pieces)
	}
}

// rangeToPrefixes returns the fewest prefixes that cover exactly a..b
// (same family, a <= b).
func rangeToPrefixes(a, b netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for {
		// The largest block that starts at a and ends at or before b.
		bits := a.BitLen()
		for bits > 0 {
			p := netip.PrefixFrom(a, bits-1).Masked()
			if p.Addr() != a || lastAddr(p).Compare(b) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(a, bits)
		out = append(out, p)
		last := lastAddr(p)
		if last.Compare(b) >= 0 {
			return out
		}
		a = last.Next()
	}
}

// lastAddr is the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// finish resolves what depends on several lines: relay addresses,
// credentials, metrics and lifetimes.
func (im *importer) finish() {
	im.finishRelay()
	im.finishAuth()
	im.finishPolicy()

	off := func(key string) bool {
		st := im.set[key]
		return st != nil && st.items[0].lit == "false"
	}
	if im.set["relay.tcp"] == nil && !(off("listen.tcp") && off("listen.tls")) {
		im.notes = append(im.notes, CoturnNote{Kind: CoturnChanged,
			Text: "TCP relays (RFC 6062): coturn allows them unless no-tcp-relay, icegate only with relay.tcp = true (browsers never ask for them)"})
	}
	if im.set["tls.cert_file"] == nil && !(off("listen.tls") && off("listen.dtls")) {
		im.notes = append(im.notes, CoturnNote{Kind: CoturnChanged,
			Text: "no cert/pkey: coturn serves no TLS without its certificate file, icegate serves TLS and DTLS with a self-signed certificate made at start (browsers refuse it for turns:); set tls.cert_file and tls.key_file, or listen.tls = false and listen.dtls = false"})
	}

	if im.maxLifetime > 0 && im.maxLifetime < 600 {
		// The default lifetime (10m) must not exceed the maximum.
		im.set["limits.default_lifetime"] = &hclSetting{items: []hclItem{{lit: hclString(strconv.Itoa(im.maxLifetime) + "s"), line: im.maxLifetimeLine, option: "max-allocate-lifetime"}}}
	}
	if im.unauthRate > 200 {
		// The burst (default 200) must be at least the rate.
		im.set["limits.unauthenticated_burst"] = &hclSetting{items: []hclItem{{lit: strconv.Itoa(2 * im.unauthRate), line: im.unauthRateLine, option: "unauthorized-ratelimit-rps"}}}
	}

	if im.prometheus {
		port := "9641"
		if im.prometheusPort != "" {
			port = im.prometheusPort
		}
		o := coturnOption{Line: im.prometheusLine, Name: "prometheus"}
		if im.prometheusAddr != "" {
			im.single("metrics.listen", hclString(net.JoinHostPort(im.prometheusAddr, port)), o)
		} else {
			im.single("metrics.listen", hclString(net.JoinHostPort("127.0.0.1", port)), o)
			im.note(CoturnChanged, o, "coturn serves metrics on every interface; icegate's listen is loopback only (write \":%s\" to serve every interface)", port)
		}
	} else if im.prometheusPort != "" || im.prometheusAddr != "" {
		im.notes = append(im.notes, CoturnNote{Kind: CoturnBuiltIn, Text: "prometheus-port/prometheus-address without prometheus: coturn serves no metrics; icegate keeps its default metrics.listen (loopback)"})
	}
}

func (im *importer) finishRelay() {
	type fam struct {
		name      string
		is4       bool
		bind, pub *hclItem
	}
	fams := []*fam{{name: "ipv4", is4: true}, {name: "ipv6"}}
	pick := func(a netip.Addr) *fam {
		if a.Is4() {
			return fams[0]
		}
		return fams[1]
	}
	anyRelayIP := len(im.relayIPs) > 0
	for _, r := range im.relayIPs {
		o := coturnOption{Line: r.line, Name: r.name}
		f := pick(r.a)
		if f.bind != nil {
			im.note(CoturnUnsupported, o, "%s: icegate relays from one address per family; %s (line %d) is kept", r.a, unquote(f.bind.lit), f.bind.line)
			continue
		}
		f.bind = &hclItem{lit: hclString(r.a.String()), line: r.line, option: r.name}
	}
	privateOK := false
	for _, e := range im.externals {
		o := coturnOption{Line: e.line, Name: e.name}
		f := pick(e.pub)
		if f.pub != nil {
			im.note(CoturnUnsupported, o, "%s: icegate advertises one address per family; %s (line %d) is kept (a second address for RFC 5780 goes in stun.alternate_public)", e.pub, unquote(f.pub.lit), f.pub.line)
			continue
		}
		f.pub = &hclItem{lit: hclString(e.pub.String()), line: e.line, option: e.name}
		if what := auth.NonPublic(e.pub); what != "" && !privateOK {
			privateOK = true
			im.single("relay.private_ok", "true", o)
			im.note(CoturnChanged, o, "%s is %s: written with relay.private_ok = true (a LAN or a test); peers on the internet cannot reach relays there", e.pub, what)
		}
		if !e.priv.IsValid() {
			continue
		}
		switch {
		case f.bind == nil:
			f.bind = &hclItem{lit: hclString(e.priv.String()), line: e.line, option: e.name}
		case unquote(f.bind.lit) != e.priv.String():
			im.note(CoturnChanged, o, "the private address %s differs from relay-ip %s (line %d); icegate binds relays to the relay-ip", e.priv, unquote(f.bind.lit), f.bind.line)
		}
	}
	if !anyRelayIP {
		// Without relay-ip, coturn relays from the address the client
		// reached. With one specific listening-ip of a family, that is
		// always the same address: bind relays to it.
		for _, f := range fams {
			if f.bind != nil {
				continue
			}
			var only []addrLine
			for _, l := range im.listenIPs {
				if l.a.Is4() == f.is4 && !l.a.IsUnspecified() {
					only = append(only, l)
				}
			}
			switch {
			case len(only) == 1:
				l := only[0]
				f.bind = &hclItem{lit: hclString(l.a.String()), line: l.line, option: l.name}
				im.notes = append(im.notes, CoturnNote{Kind: CoturnChanged, Line: l.line, Option: l.name,
					Text: fmt.Sprintf("also relay.%s_bind: without relay-ip, coturn relays from the address the client reached, which is this one", f.name)})
			case len(only) > 1:
				im.notes = append(im.notes, CoturnNote{Kind: CoturnChanged, Line: only[0].line, Option: only[0].name,
					Text: fmt.Sprintf("several %s listening-ip and no relay-ip: coturn relays from whichever the client reached, icegate from relay.%s_bind (every interface), advertising one address; set relay.%s_bind and relay.%s_public", f.name, f.name, f.name, f.name)})
			}
		}
	}
	for _, f := range fams {
		if f.bind != nil {
			im.set["relay."+f.name+"_bind"] = &hclSetting{items: []hclItem{*f.bind}}
		} else if anyRelayIP && f.pub == nil {
			// coturn relays from the relay-ip addresses only: none of
			// this family means no relays of it.
			fam := "IPv6"
			if f.is4 {
				fam = "IPv4"
			}
			im.set["relay."+f.name+"_bind"] = &hclSetting{items: []hclItem{{lit: `""`, line: im.relayIPs[0].line, option: "relay-ip"}}}
			im.notes = append(im.notes, CoturnNote{Kind: CoturnChanged, Line: im.relayIPs[0].line, Option: "relay-ip",
				Text: fmt.Sprintf("no %s relay-ip: %s relays are off, as in coturn (relay.%s_bind = \"\")", fam, fam, f.name)})
		}
		if f.pub != nil {
			im.set["relay."+f.name+"_public"] = &hclSetting{items: []hclItem{*f.pub}}
		}
	}
}

func (im *importer) finishAuth() {
	if im.stunOnly {
		for _, s := range im.secrets {
			im.notes = append(im.notes, CoturnNote{Kind: CoturnUnsupported, Line: s.line, Option: s.option, Text: "not carried over: stun-only serves no TURN"})
		}
		for _, o := range im.userLines {
			im.note(CoturnUnsupported, o, "not carried over: stun-only serves no TURN")
		}
		return
	}
	if len(im.secrets) > 0 {
		im.set["auth.secrets"] = &hclSetting{list: true, items: im.secrets}
	} else if im.useAuthSecret {
		im.notes = append(im.notes, CoturnNote{Kind: CoturnChanged, Text: "use-auth-secret without static-auth-secret: coturn takes the secrets from its database; put them in auth.secrets"})
	}

	byName := map[string]int{}
	for _, o := range im.userLines {
		if im.useAuthSecret {
			// add_static_user_account refuses every user once
			// use-auth-secret is on (users are read last, in pass 2).
			im.note(CoturnUnsupported, o, "coturn ignores user= when use-auth-secret is on, so this user could not log in; not carried over (an auth.user block would let it)")
			continue
		}
		name, pass, ok := strings.Cut(o.Value, ":")
		pass = strings.TrimLeft(pass, " \t")
		if !ok || name == "" || pass == "" {
			im.note(CoturnUnsupported, o, "not name:password (coturn refuses it); not carried over")
			continue
		}
		if why := unwritable(name + pass); why != "" {
			im.note(CoturnUnsupported, o, "the name or password %s; not carried over", why)
			continue
		}
		u := importUser{name: name, line: o.Line}
		if strings.HasPrefix(pass, "0x") {
			if _, err := auth.ParseKey(pass); err != nil {
				// Never print the key: it is as good as the password.
				im.note(CoturnUnsupported, o, "user %s: the key is not 32 hex digits after 0x (an MD5 key as turnadmin -k prints it); not carried over", quoteValue(name))
				continue
			}
			u.key = pass
			im.keyUsers = true
		} else {
			u.password = pass
		}
		if i, dup := byName[name]; dup {
			im.note(CoturnChanged, o, "user %s again; this line replaces line %d, as in coturn", quoteValue(name), im.users[i].line)
			im.users[i] = u
			continue
		}
		byName[name] = len(im.users)
		im.users = append(im.users, u)
	}
	if im.keyUsers && !im.realmSet {
		im.notes = append(im.notes, CoturnNote{Kind: CoturnChanged, Text: "users with keys (0x...) but no realm: a key is MD5(name:realm:password), so set realm to the one turnadmin -r was given"})
	}
	if im.ltCredMech && len(im.users) == 0 && len(im.secrets) == 0 && !im.useAuthSecret {
		im.notes = append(im.notes, CoturnNote{Kind: CoturnChanged, Text: "lt-cred-mech without user= lines: coturn takes the users from its database; add an auth.user block for each"})
	}
	if len(im.users) == 0 && len(im.secrets) == 0 && !im.noAuth {
		im.notes = append(im.notes, CoturnNote{Kind: CoturnChanged, Text: "no credentials in the file: icegate makes a secret at start and prints how to mint credentials with it (auth.ephemeral_secret); add auth.secrets or users"})
	}
}

// sortedNotes puts the file-wide notes first, then the others by line.
func (im *importer) sortedNotes() []CoturnNote {
	out := make([]CoturnNote, 0, len(im.notes))
	for _, n := range im.notes {
		if n.Line == 0 {
			out = append(out, n)
		}
	}
	rest := make([]CoturnNote, 0, len(im.notes))
	for _, n := range im.notes {
		if n.Line != 0 {
			rest = append(rest, n)
		}
	}
	// A stable insertion sort: notes are few and mostly in order already.
	for i := 1; i < len(rest); i++ {
		for j := i; j > 0 && rest[j].Line < rest[j-1].Line; j-- {
			rest[j], rest[j-1] = rest[j-1], rest[j]
		}
	}
	return append(out, rest...)
}

// importBlocks is the output's layout: each block and its attributes in
// the order of default.hcl.
var importBlocks = []struct {
	block string
	attrs []string
}{
	{"", []string{"realm"}},
	{"log", []string{"level"}},
	{"listen", []string{"addresses", "port", "tls_port", "socket_buffer", "udp_segmentation", "udp", "tcp", "tls", "dtls"}},
	{"tls", []string{"cert_file", "key_file"}},
	{"relay", []string{"min_port", "max_port", "ipv4_bind", "ipv4_public", "ipv6_bind", "ipv6_public", "private_ok", "tcp", "mode"}},
	{"auth", []string{"secrets", "separator", "ephemeral_secret"}},
	{"policy", []string{"presets", "allow", "deny"}},
	{"limits", []string{"allocations_per_user", "allocations_total", "default_lifetime", "max_lifetime", "bandwidth_per_allocation", "unauthenticated_rate", "unauthenticated_burst"}},
	{"metrics", []string{"listen"}},
	{"stun", []string{"alternate_port"}},
}

func (im *importer) render() []byte {
	var b strings.Builder
	b.WriteString("# Imported from coturn's turnserver.conf by `icegate config import`.\n")
	b.WriteString("# Each attribute names the turnserver.conf line it comes from; everything\n")
	b.WriteString("# else keeps icegate's default (`icegate config default` lists them).\n")
	for _, k := range []CoturnNoteKind{CoturnUnsupported, CoturnChanged, CoturnBuiltIn} {
		first := true
		for _, n := range im.sortedNotes() {
			if n.Kind != k {
				continue
			}
			if first {
				fmt.Fprintf(&b, "#\n# %s%s:\n", strings.ToUpper(k.String()[:1]), k.String()[1:])
				first = false
			}
			fmt.Fprintf(&b, "#   %s\n", n)
		}
	}

	for _, blk := range importBlocks {
		var body strings.Builder
		indent := "  "
		if blk.block == "" {
			indent = ""
		}
		for _, attr := range blk.attrs {
			key := attr
			if blk.block != "" {
				key = blk.block + "." + attr
			}
			s := im.set[key]
			if s == nil || len(s.items) == 0 {
				continue
			}
			if !s.list {
				it := s.items[0]
				fmt.Fprintf(&body, "%s%s = %s # line %d: %s\n", indent, attr, it.lit, it.line, safeName(it.option))
				continue
			}
			fmt.Fprintf(&body, "%s%s = [\n", indent, attr)
			for _, it := range s.items {
				fmt.Fprintf(&body, "%s  %s, # line %d: %s\n", indent, it.lit, it.line, safeName(it.option))
			}
			fmt.Fprintf(&body, "%s]\n", indent)
		}
		if blk.block == "auth" {
			for _, u := range im.users {
				fmt.Fprintf(&body, "  user %s { # line %d: user\n", hclString(u.name), u.line)
				if u.key != "" {
					fmt.Fprintf(&body, "    key = %s\n", hclString(u.key))
				} else {
					fmt.Fprintf(&body, "    password = %s\n", hclString(u.password))
				}
				body.WriteString("  }\n")
			}
		}
		if body.Len() == 0 {
			continue
		}
		b.WriteByte('\n')
		if blk.block == "" {
			b.WriteString(body.String())
			continue
		}
		fmt.Fprintf(&b, "%s {\n%s}\n", blk.block, body.String())
	}
	// Align the = signs and comments as gofmt would; only white space
	// changes.
	return hclwrite.Format([]byte(b.String()))
}

// hclString writes s as an HCL quoted string: the escapes of the HCL
// native syntax spec ("Template Literals"), with "${" and "%{" doubled so
// that no interpolation or directive starts. s must be valid UTF-8.
func hclString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case (r == '$' || r == '%') && i+1 < len(s) && s[i+1] == '{':
			b.WriteRune(r)
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || r == utf8.RuneError:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// unwritable says why v cannot be carried into HCL unchanged, or "" when
// it can. HCL holds UTF-8 only, and turns every string into a cty value,
// which normalizes it to Unicode NFC: a realm, secret or password written
// with combining characters would change, and with it every key and HMAC
// made from it. So the literal is read back as the config will read it.
func unwritable(v string) string {
	if !utf8.ValidString(v) {
		return "is not UTF-8"
	}
	expr, diags := hclsyntax.ParseExpression([]byte(hclString(v)), "", hcl.InitialPos)
	var back string
	if !diags.HasErrors() {
		diags = gohcl.DecodeExpression(expr, nil, &back)
	}
	if diags.HasErrors() || back != v {
		return "holds Unicode that HCL rewrites (to NFC), which would change it"
	}
	return ""
}

// unquote reverses hclString for the plain addresses it is used on here.
func unquote(lit string) string {
	return strings.Trim(lit, `"`)
}

// safeName prints an option name from the file on one line: as it is
// when it is an ordinary name, else quoted and cut.
func safeName(s string) string {
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return quoteValue(s)
		}
	}
	return s
}

// quoteValue quotes a non-secret value for a note, cut to 64 bytes.
func quoteValue(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.QuoteToASCII(s)
}
