package cachetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/cache"
)

// BusHarness is what RunBus needs from an implementation.
type BusHarness struct {
	// New returns the buses of two replicas that share a backend (an in-process bus, which serves one replica,
	// returns itself twice), fresh for the test (for a shared server, under a fresh key prefix). Required.
	New func(t *testing.T) (a, b cache.Bus)
	// Outages make the backend unreachable, by name; none for in-process buses.
	Outages map[string]Outage
}

// deliveryBound is how long a notice may take to arrive in the suite. Redis delivers in milliseconds; this is
// room for a loaded machine, not a promise.
const deliveryBound = 5 * time.Second

// RunBus runs the Bus conformance suite. Buses that are io.Closers are closed at the end of each subtest.
func RunBus(t *testing.T, h BusHarness) {
	t.Helper()
	subtests := []struct {
		name string
		fn   func(t *testing.T, a, b cache.Bus)
	}{
		{"every replica hears", testBusFanout},
		{"topics apart", testBusTopics},
		{"in order", testBusOrder},
		{"notices exact", testBusValues},
		{"cancel", testBusCancel},
		{"slow subscriber", testBusSlowSubscriber},
		{"concurrent publishers", testBusConcurrent},
		{"bad input", testBusBadInput},
		{"close", testBusClose},
	}
	for _, st := range subtests {
		t.Run(st.name, func(t *testing.T) {
			a, b := h.New(t)
			t.Cleanup(func() { closeIfCloser(t, a); closeIfCloser(t, b) })
			st.fn(t, a, b)
		})
	}
	for name, out := range h.Outages {
		t.Run("outage "+name, func(t *testing.T) {
			a, b := h.New(t)
			t.Cleanup(func() { closeIfCloser(t, a); closeIfCloser(t, b) })
			testBusOutage(t, a, b, out)
		})
	}
}

// inbox collects what a subscription receives.
type inbox struct {
	mu   sync.Mutex
	msgs []string
	gaps int
	wake chan struct{}
}

func newInbox() *inbox { return &inbox{wake: make(chan struct{}, 1)} }

func (in *inbox) fn(msg []byte) {
	in.mu.Lock()
	in.msgs = append(in.msgs, string(msg))
	in.mu.Unlock()
	in.poke()
}

func (in *inbox) gap() {
	in.mu.Lock()
	in.gaps++
	in.mu.Unlock()
	in.poke()
}

func (in *inbox) poke() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

func (in *inbox) snapshot() ([]string, int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.msgs...), in.gaps
}

// waitFor waits until cond holds for the inbox, or fails after deliveryBound.
func (in *inbox) waitFor(t *testing.T, what string, cond func(msgs []string, gaps int) bool) {
	t.Helper()
	deadline := time.NewTimer(deliveryBound)
	defer deadline.Stop()
	for {
		msgs, gaps := in.snapshot()
		if cond(msgs, gaps) {
			return
		}
		select {
		case <-in.wake:
		case <-time.After(20 * time.Millisecond):
		case <-deadline.C:
			t.Fatalf("%s: not within %v; got %d notices %q, %d gaps", what, deliveryBound, len(msgs), truncList(msgs), gaps)
		}
	}
}

func (in *inbox) waitMsgs(t *testing.T, what string, want []string) {
	t.Helper()
	in.waitFor(t, what, func(msgs []string, _ int) bool { return len(msgs) >= len(want) })
	msgs, _ := in.snapshot()
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Fatalf("%s (-want +got):\n%s", what, diff)
	}
}

func truncList(s []string) []string {
	if len(s) > 10 {
		return append(s[:10:10], "...")
	}
	return s
}

func subscribe(t *testing.T, b cache.Bus, topic string) *inbox {
	in := newInbox()
	var cancel func()
	if gs, ok := b.(cache.GapSubscriber); ok {
		cancel = gs.SubscribeGaps(topic, in.fn, in.gap)
	} else {
		cancel = b.Subscribe(topic, in.fn)
	}
	t.Cleanup(cancel)
	return in
}

func mustPublish(t *testing.T, b cache.Bus, topic, msg string) {
	t.Helper()
	if err := b.Publish(context.Background(), topic, []byte(msg)); err != nil {
		t.Fatalf("Publish(%s, %q): %v", topic, msg, err)
	}
}

func testBusFanout(t *testing.T, a, b cache.Bus) {
	onA, onA2, onB := subscribe(t, a, "revoke"), subscribe(t, a, "revoke"), subscribe(t, b, "revoke")
	mustPublish(t, a, "revoke", "sha256:abc")
	mustPublish(t, b, "revoke", "sha256:def")
	for name, in := range map[string]*inbox{"publisher's own replica": onA, "second subscriber there": onA2, "other replica": onB} {
		in.waitFor(t, name, func(msgs []string, _ int) bool { return len(msgs) == 2 })
		msgs, _ := in.snapshot()
		if !(cmp.Equal(msgs, []string{"sha256:abc", "sha256:def"}) || cmp.Equal(msgs, []string{"sha256:def", "sha256:abc"})) {
			t.Errorf("%s got %q", name, msgs)
		}
	}
}

func testBusTopics(t *testing.T, a, b cache.Bus) {
	lists, audit := subscribe(t, b, "lists"), subscribe(t, b, "audit")
	mustPublish(t, a, "lists", "l1")
	mustPublish(t, a, "audit", "a1")
	mustPublish(t, a, "nobody-listens", "x")
	lists.waitMsgs(t, "lists", []string{"l1"})
	audit.waitMsgs(t, "audit", []string{"a1"})
	time.Sleep(100 * time.Millisecond)
	if msgs, _ := lists.snapshot(); len(msgs) != 1 {
		t.Errorf("lists got %q; want only its own topic", msgs)
	}
}

func testBusOrder(t *testing.T, a, b cache.Bus) {
	in := subscribe(t, b, "t")
	var want []string
	for i := range 200 {
		want = append(want, fmt.Sprint(i))
		mustPublish(t, a, "t", want[i])
	}
	in.waitMsgs(t, "200 notices from one publisher", want)
}

func testBusValues(t *testing.T, a, b cache.Bus) {
	in := subscribe(t, b, "t")
	bin := make([]byte, 256)
	for i := range bin {
		bin[i] = byte(i)
	}
	large := bytes.Repeat([]byte("x"), cache.MaxRecordSize)
	for _, v := range [][]byte{bin, {}, large, []byte("épée\n")} {
		if err := a.Publish(context.Background(), "t", v); err != nil {
			t.Fatal(err)
		}
	}
	in.waitMsgs(t, "binary, empty, largest and text notices", []string{string(bin), "", string(large), "épée\n"})
}

func testBusCancel(t *testing.T, a, b cache.Bus) {
	in := newInbox()
	cancel := b.Subscribe("t", in.fn)
	keep := subscribe(t, b, "t")
	mustPublish(t, a, "t", "1")
	in.waitMsgs(t, "before cancel", []string{"1"})
	cancel()
	cancel() // twice is harmless
	mustPublish(t, a, "t", "2")
	keep.waitMsgs(t, "the other subscriber", []string{"1", "2"})
	time.Sleep(100 * time.Millisecond)
	if msgs, _ := in.snapshot(); len(msgs) != 1 {
		t.Errorf("a cancelled subscription got %q", msgs)
	}
}

func testBusSlowSubscriber(t *testing.T, a, b cache.Bus) {
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	stuck := b.Subscribe("t", func([]byte) { <-release })
	t.Cleanup(stuck)
	fast := subscribe(t, b, "t")
	start := time.Now()
	var want []string
	for i := range 50 {
		want = append(want, fmt.Sprint(i))
		mustPublish(t, a, "t", want[i])
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("50 publishes took %v with a stuck subscriber; a subscriber must not hold up the publisher", d)
	}
	fast.waitMsgs(t, "the other subscriber, beside a stuck one", want)
	once.Do(func() { close(release) })
}

func testBusConcurrent(t *testing.T, a, b cache.Bus) {
	const workers, rounds = 8, 25
	in := subscribe(t, b, "t")
	var wg sync.WaitGroup
	for w := range workers {
		pub := a
		if w%2 == 1 {
			pub = b
		}
		wg.Go(func() {
			for i := range rounds {
				if err := pub.Publish(context.Background(), "t", fmt.Appendf(nil, "w%d-%d", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	in.waitFor(t, "every notice", func(msgs []string, _ int) bool { return len(msgs) >= workers*rounds })
	msgs, _ := in.snapshot()
	seen := map[string]bool{}
	next := map[string]int{}
	for _, m := range msgs {
		if seen[m] {
			t.Errorf("%s delivered twice", m)
		}
		seen[m] = true
		w, _, _ := strings.Cut(m, "-")
		if want := fmt.Sprintf("%s-%d", w, next[w]); m != want {
			t.Errorf("got %s, want %s: one publisher's notices out of order", m, want)
		}
		next[w]++
	}
	if len(msgs) != workers*rounds {
		t.Errorf("%d notices; want %d", len(msgs), workers*rounds)
	}
}

func testBusBadInput(t *testing.T, a, _ cache.Bus) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, topic string
		msg         []byte
	}{
		{"empty topic", "", []byte("x")},
		{"long topic", strings.Repeat("t", 257), []byte("x")},
		{"oversized notice", "t", make([]byte, cache.MaxRecordSize+1)},
	} {
		if err := a.Publish(ctx, tc.topic, tc.msg); err == nil || errors.Is(err, cache.ErrUnavailable) {
			t.Errorf("%s: Publish = %v; want a plain error", tc.name, err)
		}
	}
	cancel := a.Subscribe("", func([]byte) { t.Error("delivered on an empty topic") })
	cancel()
}

func testBusClose(t *testing.T, a, b cache.Bus) {
	c, ok := a.(interface{ Close() error })
	if !ok {
		t.Skip("not closable")
	}
	in := newInbox()
	a.Subscribe("t", in.fn) // Close ends it
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if b != a {
		mustPublish(t, b, "t", "after close")
		time.Sleep(200 * time.Millisecond)
		if msgs, _ := in.snapshot(); len(msgs) != 0 {
			t.Errorf("a closed bus delivered %q", msgs)
		}
	} else if err := a.Publish(context.Background(), "t", []byte("x")); err == nil {
		t.Error("Publish on a closed bus succeeded")
	}
}

func testBusOutage(t *testing.T, a, b cache.Bus, out Outage) {
	ctx := context.Background()
	in := subscribe(t, b, "t")
	mustPublish(t, a, "t", "before")
	in.waitMsgs(t, "before the outage", []string{"before"})

	restore := out(t)
	restored := false
	defer func() {
		if !restored {
			restore()
		}
	}()
	took, err := timed(func() error { return a.Publish(ctx, "t", []byte("during")) })
	wantUnavailable(t, "Publish", took, err)
	if hc, ok := b.(cache.HealthChecker); ok {
		start := time.Now()
		for hc.Healthy() == nil {
			if time.Since(start) > outageBound {
				t.Fatalf("Healthy() still nil %v into the outage", outageBound)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("the subscriber's Healthy() reported the outage after %v: %v", time.Since(start).Round(10e6), hc.Healthy())
	}
	restore()
	restored = true

	// The subscription comes back by itself, and says notices may have been lost meanwhile.
	if _, ok := b.(cache.GapSubscriber); ok {
		start := time.Now()
		in.waitFor(t, "a gap after the outage", func(_ []string, gaps int) bool { return gaps > 0 })
		t.Logf("gap reported %v after the backend came back", time.Since(start).Round(10e6))
	}
	eventually(t, "Publish after the outage", func() error { return a.Publish(ctx, "t", []byte("after")) })
	in.waitFor(t, "a notice after the outage", func(msgs []string, _ int) bool {
		return len(msgs) > 0 && msgs[len(msgs)-1] == "after"
	})
	if hc, ok := b.(cache.HealthChecker); ok {
		if err := hc.Healthy(); err != nil {
			t.Errorf("Healthy() after the outage: %v", err)
		}
	}
}
