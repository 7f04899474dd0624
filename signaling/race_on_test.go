//go:build race

package signaling

// raceEnabled: the race detector is on, and a connection costs about ten
// times the CPU; the churn test opens fewer.
const raceEnabled = true
