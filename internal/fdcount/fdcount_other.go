//go:build !linux

package fdcount

// Limit and Open are Linux-only; elsewhere a Guard keeps no reserve.
func Limit() (int, error) { return 0, ErrUnsupported }

// Open is Linux-only (see Limit).
func Open(*[]byte) (int, error) { return 0, ErrUnsupported }
