// Package netnstest builds network namespaces for tests: namespaces of the
// test's own joined by veth pairs, with addresses and routes only inside
// them (nothing is added to the root namespace but the namespaces' names),
// removed when the test ends whatever happens; it runs a function on a
// thread moved into a namespace, so that the sockets, netlink requests and
// interface names it uses are that namespace's. Tests that need it skip
// cleanly when not run as root and fail when a tool they need is missing
// (tools/install-test-deps.sh installs iproute2 and ethtool).
//
// It is for tests only: it fails the test on any error. Linux only.
package netnstest
