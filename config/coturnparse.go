package config

import (
	"bytes"
	"strings"
)

// coturnOption is one option line of a turnserver.conf.
type coturnOption struct {
	Line  int    // 1-based
	Name  string // as written, without value
	Value string // "" when the line has none
}

// parseCoturn splits a turnserver.conf into its option lines the way
// coturn 4.6-4.17 reads the file (read_config_file and parse_arg_string in
// src/apps/relay/mainrelay.c):
//   - leading blanks are skipped; a line whose first other character is
//     '#' is a comment, and there are no comments after an option
//     ("realm=a # b" sets the realm "a # b");
//   - trailing white space is cut;
//   - the name ends at the first ' ', '=' or tab, and the value starts
//     after the run of those that follows ("name=value", "name value" and
//     "name = value" are the same);
//   - a value that starts with '"' loses it, and a '"' at its end too;
//   - a bare name is a flag; its value is "" and means true.
//
// It keeps every line it finds, so the caller can say what it did with
// each; a line with a NUL byte (coturn's C strings stop there) keeps only
// what comes before it.
func parseCoturn(src []byte) []coturnOption {
	var out []coturnOption
	n := 0
	for len(src) > 0 {
		n++
		var line []byte
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i], src[i+1:]
		} else {
			line, src = src, nil
		}
		if i := bytes.IndexByte(line, 0); i >= 0 {
			line = line[:i]
		}
		s := strings.TrimLeft(string(line), " \t")
		if s == "" || s[0] == '#' {
			continue
		}
		s = strings.TrimRight(s, " \t\r\n\v\f")
		if s == "" {
			continue
		}
		name, value := s, ""
		if i := strings.IndexAny(s, " =\t"); i >= 0 {
			name = s[:i]
			value = strings.TrimLeft(s[i:], " =\t")
		}
		if strings.HasPrefix(value, `"`) {
			value = strings.TrimRight(value[1:], " \t\r\n")
			value = strings.TrimSuffix(value, `"`)
		}
		out = append(out, coturnOption{Line: n, Name: name, Value: value})
	}
	return out
}

// coturnBool reads a flag's value as coturn's get_bool_value does: none
// means true; 0, n..., f..., off mean false; y..., t..., 1-9..., on mean
// true. ok is false for anything else, which coturn refuses at start.
func coturnBool(v string) (b, ok bool) {
	if v == "" {
		return true, true
	}
	switch c := v[0]; {
	case c == '0' || c == 'n' || c == 'N' || c == 'f' || c == 'F':
		return false, true
	case c == 'y' || c == 'Y' || c == 't' || c == 'T' || (c > '0' && c <= '9'):
		return true, true
	}
	switch v {
	case "off", "OFF", "Off":
		return false, true
	case "on", "ON", "On":
		return true, true
	}
	return false, false
}
