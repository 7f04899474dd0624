package config

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// decodeBody decodes body into the struct ptr points to with gohcl, and
// rewrites gohcl's diagnostics so that they name the config field, as
// Validate's do. Load relies on what gohcl does:
//   - an attribute absent from the body leaves its field alone, so decoding a
//     user's file over the defaults keeps what the user left out;
//   - a block decodes into the existing pointer, so `listen { port = 1 }`
//     keeps the default addresses;
//   - a value that fails to convert leaves its field alone (gocty builds a
//     list aside and stores it only when every element converted);
//   - an attribute or block the schema does not know is an error at its
//     file:line (hcl.Body.Content does that).
//
// gohcl decodes repeated blocks (auth.user) into the elements already in the
// slice; the embedded defaults have no user, so a user's blocks never merge
// with one.
func decodeBody(body hcl.Body, ptr any) hcl.Diagnostics {
	fields := map[hcl.Range]string{}
	diags := gohcl.DecodeBody(namedBody{Body: body, fields: fields}, nil, ptr)

	var out hcl.Diagnostics
	for _, d := range diags {
		if d.Summary != "Unsuitable value type" || d.Context == nil {
			out = append(out, d)
			continue
		}
		// gohcl reports a value that failed to evaluate (a variable, a
		// function call) a second time as unknown; the first says why.
		if evalFailed(diags, *d.Context) {
			continue
		}
		// "Unsuitable value type: Unsuitable value: a number is required" at
		// the value's first token becomes "listen.port: a number is
		// required" at the whole value.
		if name, ok := fields[*d.Context]; ok {
			d.Summary = name + ": " + strings.TrimPrefix(d.Detail, "Unsuitable value: ")
			d.Detail = ""
			d.Subject = d.Context.Ptr()
		}
		out = append(out, d)
	}
	return out
}

// evalFailed says whether diags hold an evaluation error inside the value at
// r.
func evalFailed(diags hcl.Diagnostics, r hcl.Range) bool {
	for _, d := range diags {
		if d.Severity == hcl.DiagError && d.Summary != "Unsuitable value type" && d.Subject != nil &&
			d.Subject.Filename == r.Filename && r.ContainsOffset(d.Subject.Start.Byte) {
			return true
		}
	}
	return false
}

// namedBody is an hcl.Body that knows its place in the config, so that what
// gohcl decodes from it can be named: an unknown or malformed item's message
// names its block ("relay: Unsupported argument: ..."), and fields records
// each attribute's value range with the field's name ("relay.min_port").
type namedBody struct {
	hcl.Body
	path   string // "relay." or `auth.user["alice"].`; "" at the top
	fields map[hcl.Range]string
}

func (b namedBody) Content(schema *hcl.BodySchema) (*hcl.BodyContent, hcl.Diagnostics) {
	content, diags := b.Body.Content(schema)
	if b.path != "" {
		for _, d := range diags {
			d.Summary = strings.TrimSuffix(b.path, ".") + ": " + d.Summary
		}
	}
	if content == nil {
		return nil, diags
	}
	for name, attr := range content.Attributes {
		b.fields[attr.Expr.Range()] = b.path + name
	}
	for i, blk := range content.Blocks {
		p := b.path + blk.Type
		if len(blk.Labels) > 0 {
			p += fmt.Sprintf("[%q]", blk.Labels[0])
		}
		named := *blk
		named.Body = namedBody{Body: blk.Body, path: p + ".", fields: b.fields}
		content.Blocks[i] = &named
	}
	return content, diags
}
