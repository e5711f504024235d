package policy

import (
	"math/rand"
	"os"
	"testing"
	"time"
)

func TestHunt(t *testing.T) {
	seeds := []string{fullDoc, evalDoc, scanPolicy, trustHeader}
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	deadline := time.Now().Add(60 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		b := []byte(seeds[r.Intn(len(seeds))])
		for k := 0; k < 1+r.Intn(8); k++ {
			if len(b) == 0 {
				break
			}
			i := r.Intn(len(b))
			switch r.Intn(5) {
			case 0:
				b[i] = byte(r.Intn(256))
			case 1:
				b = append(b[:i], b[i+1:]...)
			case 2:
				j := i + r.Intn(len(b)-i)
				b = append(b[:i], b[j:]...)
			case 3:
				j := r.Intn(len(b))
				ins := append([]byte{}, b[j:min(len(b), j+r.Intn(40))]...)
				b = append(b[:i], append(ins, b[i:]...)...)
			case 4:
				const cs = "{}[],:&*!|>'\"%@`#-?\n "
				b[i] = cs[r.Intn(len(cs))]
			}
		}
		done := make(chan struct{})
		in := string(b)
		go func() {
			defer close(done)
			p, err := Parse([]byte(in), "p.yaml", testFiles.read)
			if err == nil {
				for _, rule := range append(p.Rules(), p.Default()) {
					rule.Evaluate(Facts{})
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			os.WriteFile("/tmp/hang-input.yaml", b, 0o644)
			t.Fatalf("hang after %d inputs; input in /tmp/hang-input.yaml", n)
		}
		n++
	}
	t.Logf("%d inputs", n)
}
