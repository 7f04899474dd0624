//go:build !linux

package kfast

import "net/netip"

// Program is the loaded relay program; off Linux there is none, and Open
// says so.
type Program struct{}

// Open reports ErrNotSupported: the program is a Linux TC program.
func Open(Config) (*Program, error) { return nil, ErrNotSupported }

// Attach reports ErrNotSupported.
func (*Program) Attach(...string) error { return ErrNotSupported }

// Interfaces returns nothing.
func (*Program) Interfaces() []string { return nil }

// Attachments returns nothing.
func (*Program) Attachments() map[string]string { return nil }

// Close does nothing.
func (*Program) Close() error { return nil }

// Bind reports ErrNotSupported.
func (*Program) Bind(Flow) error { return ErrNotSupported }

// Unbind does nothing.
func (*Program) Unbind(netip.AddrPort, netip.AddrPort, uint16) {}

// RemoveAllocation reports ErrNotSupported.
func (*Program) RemoveAllocation(uint64) (Counters, error) { return Counters{}, ErrNotSupported }

// Flows returns 0.
func (*Program) Flows() int { return 0 }

// Counters reports ErrNotSupported.
func (*Program) Counters(uint64) (Counters, error) { return Counters{}, ErrNotSupported }

// ResetCounters reports ErrNotSupported.
func (*Program) ResetCounters(uint64) error { return ErrNotSupported }

// Failures reports ErrNotSupported.
func (*Program) Failures() (uint64, uint64, error) { return 0, 0, ErrNotSupported }
