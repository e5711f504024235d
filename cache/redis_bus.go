package cache

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// publishTimeout bounds one Publish, whatever the caller's context allows.
	publishTimeout = 2 * time.Second
	// subscribeWait bounds how long Subscribe waits for the server to confirm a new subscription.
	subscribeWait = 3 * time.Second
	// busPingEvery is how long the subscription may be silent before it is PINGed; a PING unanswered for as long
	// again counts as a lost connection, so a hung server or a dead link is noticed within about 2s.
	busPingEvery = time.Second
	// busMaxBackoff caps the wait between attempts to subscribe again.
	busMaxBackoff = 2 * time.Second
)

// RedisBus is [Bus] on Redis PUBLISH and SUBSCRIBE, for a fleet. Topic t is the channel <prefix>bus/t.
//
// One connection carries every subscription of the bus. A goroutine reads it, PINGs it after a second of silence,
// and when the connection is lost (an error, or a PING unanswered for a second) it connects and subscribes again
// with backoff (up to 2s between attempts) until it succeeds or the bus is closed: no restart is needed after a
// Redis outage. Notices published while the subscription was down are lost, so once it is back every subscriber
// registered with SubscribeGaps is told of a gap. Publish gives up after 2s; its errors wrap ErrUnavailable.
// It does not own the client: Close closes the subscription connection, not the client.
type RedisBus struct {
	client redis.UniversalClient
	prefix string
	health *redisHealth
	fan    fanout

	// mu guards the subscription and is held while (re)subscribing, which does I/O (bounded by the dial and
	// write timeouts).
	mu       sync.Mutex
	ps       *redis.PubSub // the live subscription; nil before the first Subscribe and while reconnecting
	channels map[string]bool
	started  bool
	closed   bool
	stop     chan struct{}
	done     chan struct{}

	// smu guards the subscription's state, never across I/O: Healthy must answer at once.
	smu        sync.Mutex
	waiters    map[string][]chan struct{}
	subscribed bool  // something subscribed: from then on the subscription's state is the bus's health
	down       error // why the subscription is down; nil while it is up
	lost       bool  // the subscription was down since the last gap was reported
}

var (
	_ GapSubscriber = (*RedisBus)(nil)
	_ HealthChecker = (*RedisBus)(nil)
)

// NewRedisBus returns a Bus on client. Options: WithKeyPrefix (default "portcullis:"). It connects on the first
// Subscribe.
func NewRedisBus(client redis.UniversalClient, opts ...RedisOption) *RedisBus {
	return &RedisBus{
		client:   client,
		prefix:   newRedisConfig(opts).prefix,
		health:   newRedisHealth(client, ""),
		channels: map[string]bool{},
		waiters:  map[string][]chan struct{}{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// Publish implements Bus with PUBLISH, bounded by 2s.
func (b *RedisBus) Publish(ctx context.Context, topic string, msg []byte) error {
	if err := checkPublish(topic, msg); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := b.client.Publish(ctx, busChannel(b.prefix, topic), msg).Err(); err != nil {
		return unavailable("publish", err)
	}
	return nil
}

// Subscribe implements Bus.
func (b *RedisBus) Subscribe(topic string, fn func(msg []byte)) (cancel func()) {
	return b.SubscribeGaps(topic, fn, nil)
}

// SubscribeGaps implements GapSubscriber: gap is called once the subscription is back after it was lost (or
// could not be made when Subscribe was called), and when the subscriber fell too far behind.
func (b *RedisBus) SubscribeGaps(topic string, fn func(msg []byte), gap func()) (cancel func()) {
	cancel = b.fan.add(topic, fn, gap)
	if checkTopic(topic) != nil {
		return cancel
	}
	ch := busChannel(b.prefix, topic)
	b.mu.Lock()
	if b.closed || b.channels[ch] {
		b.mu.Unlock()
		return cancel
	}
	b.channels[ch] = true
	confirmed := make(chan struct{})
	b.smu.Lock()
	b.waiters[ch] = append(b.waiters[ch], confirmed)
	if !b.subscribed {
		b.subscribed = true
		b.down = unavailable("subscription", errors.New("not confirmed yet"))
	}
	b.smu.Unlock()
	if !b.started {
		b.started = true
		go b.run()
	} else if b.ps != nil {
		ctx, cancelCtx := context.WithTimeout(context.Background(), subscribeWait)
		_ = b.ps.Subscribe(ctx, ch) // a failure shows in the receive loop, which subscribes again
		cancelCtx()
	}
	b.mu.Unlock()
	t := time.NewTimer(subscribeWait)
	defer t.Stop()
	select {
	case <-confirmed:
	case <-t.C:
	case <-b.stop:
	}
	return cancel
}

// Healthy implements HealthChecker: once something subscribed, nil while the subscription is up; before that, nil
// while Redis answers PING.
func (b *RedisBus) Healthy() error {
	b.smu.Lock()
	subscribed, down := b.subscribed, b.down
	b.smu.Unlock()
	if !subscribed {
		return b.health.healthy()
	}
	return down
}

// Close ends the subscriptions and the goroutine that reads them. It does not close the client.
func (b *RedisBus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	ps, started := b.ps, b.started
	close(b.stop)
	b.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
	if started {
		<-b.done
	}
	b.fan.close()
	return nil
}

// run keeps a subscription to every channel up until Close.
func (b *RedisBus) run() {
	defer close(b.done)
	backoff := 100 * time.Millisecond
	for {
		ps := b.connect()
		if ps == nil {
			return
		}
		wasUp, err := b.receive(ps)
		_ = ps.Close()
		b.mu.Lock()
		if b.ps == ps {
			b.ps = nil
		}
		closed := b.closed
		b.mu.Unlock()
		if !closed {
			b.smu.Lock()
			b.down, b.lost = unavailable("subscription", err), true
			b.smu.Unlock()
		}
		if closed {
			return
		}
		select {
		case <-b.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, busMaxBackoff)
		if wasUp { // a fresh loss: try again soon
			backoff = 100 * time.Millisecond
		}
	}
}

// connect makes a new subscription to every channel; nil once the bus is closed.
func (b *RedisBus) connect() *redis.PubSub {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	ps := b.client.Subscribe(context.Background()) // no channels yet: no I/O
	chans := make([]string, 0, len(b.channels))
	for ch := range b.channels {
		chans = append(chans, ch)
	}
	ctx, cancel := context.WithTimeout(context.Background(), subscribeWait)
	_ = ps.Subscribe(ctx, chans...) // on failure the first Receive fails too, and run tries again
	cancel()
	b.ps = ps
	return ps
}

// receive reads the subscription until it fails: an error, or a PING unanswered within busPingEvery. It returns
// a nil error only when the bus is closed, and whether the server confirmed the subscription meanwhile.
func (b *RedisBus) receive(ps *redis.PubSub) (wasUp bool, _ error) {
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(context.Background(), busPingEvery)
		if err != nil {
			if b.isClosed() {
				return wasUp, nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				ctx, cancel := context.WithTimeout(context.Background(), busPingEvery)
				err = ps.Ping(ctx)
				cancel()
				if err != nil {
					return wasUp, err
				}
				pinged = true
				continue
			}
			return wasUp, err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				wasUp = true
				b.confirmed(m.Channel)
			}
		case *redis.Message:
			if topic, ok := strings.CutPrefix(m.Channel, b.prefix+"bus/"); ok {
				b.fan.deliver(topic, []byte(m.Payload))
			}
		}
	}
}

func (b *RedisBus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// confirmed records that the server subscribed ch: the subscription is up, waiting Subscribes return, and if it
// had been down every subscriber hears of the gap. Redis runs one SUBSCRIBE for all the channels at once, so the
// first confirmation means every channel is subscribed again.
func (b *RedisBus) confirmed(ch string) {
	b.smu.Lock()
	for _, w := range b.waiters[ch] {
		close(w)
	}
	delete(b.waiters, ch)
	lost := b.lost
	b.down, b.lost = nil, false
	b.smu.Unlock()
	if lost {
		b.fan.gapAll()
	}
}
