package main

import (
	"io"
	"log/slog"
	"net"
)

// newLogHandler is the one slog handler the server logs through: text or
// JSON on w, at the level held in level (a reload changes it).
//
// Addresses are logged as "IP:port" strings in both formats. slog's JSON
// handler would marshal a *net.UDPAddr as an object ({"IP":...,"Port":...,
// "Zone":""}), which no log pipeline greps for; converting here catches
// every package and every call site, including ones added later.
func newLogHandler(w io.Writer, format string, level slog.Leveler) slog.Handler {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: addrAsString}
	if format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// addrAsString is a slog ReplaceAttr that renders net.Addr values with
// their String method (the net package's address types print "<nil>" for a
// nil pointer).
func addrAsString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindAny {
		return a
	}
	if addr, ok := a.Value.Any().(net.Addr); ok {
		a.Value = slog.StringValue(addr.String())
	}
	return a
}
