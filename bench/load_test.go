package bench

import (
	"sync"
	"sync/atomic"
	"time"
)

// closedLoop runs op from clients goroutines, each starting its next call when the last returns, for d, and
// returns every call's latency and the first error.
func closedLoop(clients int, d time.Duration, op func() error) ([]time.Duration, time.Duration, error) {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		all      []time.Duration
		firstErr atomic.Value
	)
	start := time.Now()
	deadline := start.Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := op(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					break
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if err, ok := firstErr.Load().(error); ok {
		return all, took, err
	}
	return all, took, nil
}

// together runs op(i) for i in [0, n) at once and waits for all; it returns the wall time and the first error.
func together(n int, op func(i int) error) (time.Duration, error) {
	var (
		wg       sync.WaitGroup
		firstErr atomic.Value
	)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := op(i); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return time.Since(start), err
	}
	return time.Since(start), nil
}
