package turn

import "icegate/internal/fdcount"

// fileLimit and countOpenFiles are internal/fdcount's, which signaling's
// descriptor guard counts with too; off Linux they fail and the reserve is
// off.
func fileLimit() (int, error) { return fdcount.Limit() }

func countOpenFiles(buf *[]byte) (int, error) { return fdcount.Open(buf) }
