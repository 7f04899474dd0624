package signaling_test

import (
	"sync"
	"testing"

	"icegate/signaling"
	"icegate/signaling/bustest"
)

// The in-process bus keeps the same contract as the Redis bus: the shared
// tests run on both. Each test's "nodes" are handles on one state.
func TestMemoryBusContract(t *testing.T) {
	var mu sync.Mutex
	roots := map[*testing.T]*signaling.MemoryBus{}
	bustest.Run(t, func(t *testing.T, node string) signaling.Bus {
		mu.Lock()
		defer mu.Unlock()
		root := roots[t]
		if root == nil {
			root = signaling.NewMemoryBus()
			roots[t] = root
		}
		return root.Node(node)
	})
}
