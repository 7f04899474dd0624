package socketio

import (
	"bytes"
	"testing"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		in, out string // out "" means in re-encodes to itself
		err     bool
	}{
		{in: "0"},
		{in: `0{"token":"123"}`},
		{in: "0/custom,"},
		{in: "0/random", out: "0/random,"},
		{in: `0/admin,{"token":"x"}`},
		{in: "1"},
		{in: "1/custom,"},
		{in: `2["hello",1]`},
		{in: `2/admin,456["project:delete",123]`},
		{in: `3456[]`},
		{in: `4{"message":"Invalid namespace"}`},
		{in: `2[1,"numbered"]`},
		{in: "", err: true},
		{in: "abc", err: true},
		{in: "7", err: true},
		{in: "2{}", err: true},
		{in: "2[]", err: true},
		{in: `2["connect"]`, err: true},
		{in: `2abc["message"]`, err: true},
		{in: `1{}`, err: true},
		{in: `0[]`, err: true},
		{in: `3{}`, err: true},
		{in: `5["x"]`, err: true},
		{in: `5-["x"]`, err: true},
		{in: `511-["x"]`, err: true},
		{in: `2["x"`, err: true},
		{in: `299999999999999999999["x"]`, err: true},
	} {
		var d Decoder
		p, err := d.Decode([]byte(tc.in), false)
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if err != nil {
			continue
		}
		want := tc.out
		if want == "" {
			want = tc.in
		}
		if got := string(p.Append(nil)); got != want {
			t.Errorf("%q re-encoded as %q", tc.in, got)
		}
	}
}

func TestBinary(t *testing.T) {
	var d Decoder
	p, err := d.Decode([]byte(`52-789["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`), false)
	if p != nil || err != nil {
		t.Fatalf("header: %v %v", p, err)
	}
	if p, err = d.Decode([]byte{1, 2}, true); p != nil || err != nil {
		t.Fatalf("first attachment: %v %v", p, err)
	}
	if p, err = d.Decode([]byte{3}, true); p == nil || err != nil {
		t.Fatalf("second attachment: %v %v", p, err)
	}
	if !p.HasID || p.ID != 789 || len(p.Attachments) != 2 || !bytes.Equal(p.Attachments[1], []byte{3}) {
		t.Fatalf("packet %+v", p)
	}
	name, args, err := EventName(p.Data)
	if name != "message" || len(args) != 2 || err != nil {
		t.Fatalf("event %q %d %v", name, len(args), err)
	}
	if got := string(p.Append(nil)); got != `52-789["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]` {
		t.Fatalf("re-encoded %q", got)
	}
	// An attachment without a header, and a header interrupted by text.
	if _, err := new(Decoder).Decode([]byte{1}, true); err == nil {
		t.Fatal("stray attachment accepted")
	}
	d = Decoder{}
	_, _ = d.Decode([]byte(`51-["x",{"_placeholder":true,"num":0}]`), false)
	if _, err := d.Decode([]byte(`2["y"]`), false); err == nil {
		t.Fatal("text before the attachment accepted")
	}
}

func TestEventData(t *testing.T) {
	if got := string(EventData("a\x00b", []byte(`1`))); got != `["a\u0000b",1]` {
		t.Fatalf("%s", got)
	}
	if got := string(ArrayData()); got != `[]` {
		t.Fatalf("%s", got)
	}
}

// FuzzDecode: any message decodes or is refused, never panics; what
// decodes re-encodes to a packet that decodes the same.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"0", `0{"token":"1"}`, "0/custom,", `2["message",1]`, `21["x"]`, `3456[1]`,
		`51-["m",{"_placeholder":true,"num":0}]`, `4{"message":"x"}`, "1/a,", "abc", "2{}"} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte{1, 2, 3}, true)
	f.Fuzz(func(t *testing.T, b []byte, binary bool) {
		var d Decoder
		p, err := d.Decode(b, binary)
		if err != nil || p == nil {
			return
		}
		enc := p.Append(nil)
		var d2 Decoder
		q, err := d2.Decode(enc, false)
		if err != nil || q == nil || q.Type != p.Type || q.Namespace != p.Namespace || q.ID != p.ID || !bytes.Equal(q.Data, p.Data) {
			t.Fatalf("%q decoded to %+v, re-encoded %q, decoded again to %+v (%v)", b, p, enc, q, err)
		}
	})
}
