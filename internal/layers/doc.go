// Package layers holds no code: its test pins which of icegate's packages
// may import which, like tailscale's TestDeps. The packet path reads
// downwards: cmd wires config into the components; turn (the relay) and
// signaling stand side by side and never import each other; stun answers
// Binding; auth decides credentials and peer policy without I/O; the
// internal packages are mechanics (the wire codec, the event loops, the rate
// limited log) that decide nothing.
//
// A new import across these lines is a design change: change the table in
// layers_test.go in the same commit and say why.
package layers
