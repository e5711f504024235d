package cache

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// subscriberQueue is how many notices a subscription may fall behind before further ones are dropped and the
// subscriber is told of a gap instead.
const subscriberQueue = 10000

// LocalBus is the in-process [Bus] of a single replica: Publish hands the notice to every subscription's queue and
// returns. It is safe for concurrent use; Close stops the subscriptions.
type LocalBus struct {
	fan fanout
}

var _ GapSubscriber = (*LocalBus)(nil)

// NewLocalBus returns an in-process Bus.
func NewLocalBus() *LocalBus { return &LocalBus{} }

// Publish implements Bus. It fails only for bad input or a closed bus.
func (b *LocalBus) Publish(ctx context.Context, topic string, msg []byte) error {
	if err := checkPublish(topic, msg); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !b.fan.deliver(topic, append([]byte{}, msg...)) {
		return fmt.Errorf("%w: bus closed", ErrUnavailable)
	}
	return nil
}

// Subscribe implements Bus.
func (b *LocalBus) Subscribe(topic string, fn func(msg []byte)) (cancel func()) {
	return b.fan.add(topic, fn, nil)
}

// SubscribeGaps implements GapSubscriber: gap is called when the subscriber fell too far behind.
func (b *LocalBus) SubscribeGaps(topic string, fn func(msg []byte), gap func()) (cancel func()) {
	return b.fan.add(topic, fn, gap)
}

// Close cancels every subscription; Publish fails afterwards.
func (b *LocalBus) Close() error {
	b.fan.close()
	return nil
}

func checkPublish(topic string, msg []byte) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	return checkSize("notice", msg)
}

// fanout hands notices to subscriptions, each with its own bounded queue and goroutine, so that a slow subscriber
// delays neither the publisher nor the others. The zero value is ready to use.
type fanout struct {
	mu     sync.Mutex
	subs   map[string]map[*subscription]struct{}
	closed bool
}

// subscription is one subscriber's queue and the goroutine that empties it.
type subscription struct {
	fn  func([]byte)
	gap func()

	mu      sync.Mutex
	queue   [][]byte
	lost    bool // notices were dropped since the last gap call
	stopped atomic.Bool
	wake    chan struct{}
}

func (f *fanout) add(topic string, fn func([]byte), gap func()) (cancel func()) {
	s := &subscription{fn: fn, gap: gap, wake: make(chan struct{}, 1)}
	f.mu.Lock()
	if f.closed || checkTopic(topic) != nil {
		f.mu.Unlock()
		return func() {}
	}
	if f.subs == nil {
		f.subs = map[string]map[*subscription]struct{}{}
	}
	if f.subs[topic] == nil {
		f.subs[topic] = map[*subscription]struct{}{}
	}
	f.subs[topic][s] = struct{}{}
	f.mu.Unlock()
	go s.run()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.subs[topic], s)
			if len(f.subs[topic]) == 0 {
				delete(f.subs, topic)
			}
			f.mu.Unlock()
			s.stop()
		})
	}
}

// deliver queues msg for every subscription of topic; false when the fanout is closed. msg is shared by the
// subscriptions, each of which gets its own copy when its fn is called.
func (f *fanout) deliver(topic string, msg []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	for s := range f.subs[topic] {
		s.push(msg)
	}
	return true
}

// gapAll tells every subscription that notices may have been lost.
func (f *fanout) gapAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, subs := range f.subs {
		for s := range subs {
			s.markLost()
		}
	}
}

func (f *fanout) close() {
	f.mu.Lock()
	subs := f.subs
	f.subs, f.closed = nil, true
	f.mu.Unlock()
	for _, ss := range subs {
		for s := range ss {
			s.stop()
		}
	}
}

func (s *subscription) push(msg []byte) {
	s.mu.Lock()
	if s.stopped.Load() {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= subscriberQueue {
		s.lost = true
	} else {
		s.queue = append(s.queue, msg)
	}
	s.mu.Unlock()
	s.signal()
}

func (s *subscription) markLost() {
	s.mu.Lock()
	s.lost = true
	s.mu.Unlock()
	s.signal()
}

func (s *subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) stop() {
	s.stopped.Store(true)
	s.mu.Lock()
	s.queue = nil
	s.mu.Unlock()
	s.signal()
}

// run delivers queued notices in order, then the gap if notices were lost, until stopped.
func (s *subscription) run() {
	for range s.wake {
		for {
			s.mu.Lock()
			batch, gap := s.queue, s.lost
			s.queue, s.lost = nil, false
			s.mu.Unlock()
			if len(batch) == 0 && !gap {
				break
			}
			for _, msg := range batch {
				if s.stopped.Load() {
					return
				}
				s.fn(bytes.Clone(msg))
			}
			if gap && s.gap != nil && !s.stopped.Load() {
				s.gap()
			}
		}
		if s.stopped.Load() {
			return
		}
	}
}
