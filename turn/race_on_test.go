//go:build race

package turn

// raceEnabled: the race detector is on, and the packet path is about ten
// times slower; bulk tests move less.
const raceEnabled = true
