//go:build !linux

package turn

import "errors"

var errNoFDCount = errors.New("descriptor count only on Linux")

// fileLimit and countOpenFiles are Linux-only; elsewhere the descriptor
// reserve is off.
func fileLimit() (int, error) { return 0, errNoFDCount }

func countOpenFiles(*[]byte) (int, error) { return 0, errNoFDCount }
