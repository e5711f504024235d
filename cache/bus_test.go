package cache_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
)

// A subscriber that falls 10,000 notices behind loses the ones after that, and is told so (a gap) once it has
// caught up with what it was given, so it can re-read the state; the publisher never waits for it.
func TestLocalBusSlowSubscriberGetsGap(t *testing.T) {
	b := cache.NewLocalBus()
	defer b.Close()
	release := make(chan struct{})
	var mu sync.Mutex
	var got []int
	gaps := 0
	gapAfter := -1
	done := make(chan struct{})
	stuck := make(chan struct{}, 1)
	cancel := b.SubscribeGaps("t", func(msg []byte) {
		select {
		case stuck <- struct{}{}:
		default:
		}
		<-release
		n, _ := strconv.Atoi(string(msg))
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	}, func() {
		mu.Lock()
		gaps++
		gapAfter = len(got)
		mu.Unlock()
		close(done)
	})
	defer cancel()

	const total = 1 + 10000 + 500
	start := time.Now()
	for i := range total {
		if err := b.Publish(context.Background(), "t", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			<-stuck // the subscriber holds notice 0 and takes no more
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("publishing to a stuck subscriber took %v", d)
	}
	close(release)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no gap reported")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1+10000 || gaps != 1 || gapAfter != len(got) {
		t.Fatalf("got %d notices, %d gaps (after %d); want the one it held, the 10000 queued behind it, then one gap", len(got), gaps, gapAfter)
	}
	for i, n := range got {
		if n != i {
			t.Fatalf("notice %d is %d: out of order", i, n)
		}
	}
}
