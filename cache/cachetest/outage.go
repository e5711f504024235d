package cachetest

import (
	"errors"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
)

// Outage makes a store's backend unreachable and returns a function that brings it back. The suites run each
// outage a harness offers.
type Outage func(t *testing.T) (restore func())

// RedisOutages are the outages a Redis server can suffer: "down" kills it (connections refused: errors come at
// once) and restarts it on the same port; "hung" freezes it (connections stay open, nothing answers: errors come
// from the client's timeouts) and thaws it. Start the server with Persist so that it comes back with its data.
func RedisOutages(s *RedisServer) map[string]Outage {
	return map[string]Outage{
		"down": func(t *testing.T) func() {
			s.Stop()
			return s.Restart
		},
		"hung": func(t *testing.T) func() {
			s.Freeze()
			return s.Thaw
		},
	}
}

// outageBound is how long an operation may take while the backend is out: the client's timeouts (dial 2s, read
// 1s, one retry) with room for a loaded machine.
const outageBound = 8 * time.Second

// recoveryBound is how long a store may take to work again once the backend is back, with no restart.
const recoveryBound = 15 * time.Second

// wantUnavailable fails unless err wraps cache.ErrUnavailable (and not ErrNotFound) and came within outageBound.
func wantUnavailable(t *testing.T, op string, took time.Duration, err error) {
	t.Helper()
	if !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("%s during the outage: %v; want an error wrapping ErrUnavailable", op, err)
	}
	if errors.Is(err, cache.ErrNotFound) {
		t.Errorf("%s during the outage: %v; an outage is not ErrNotFound", op, err)
	}
	if took > outageBound {
		t.Errorf("%s during the outage took %v; the client timeouts should end it within %v", op, took, outageBound)
	}
}

// eventually retries f until it returns nil or recoveryBound passes; it returns how long that took.
func eventually(t *testing.T, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > recoveryBound {
			t.Fatalf("%s: still failing %v after the backend came back: %v", what, recoveryBound, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}
