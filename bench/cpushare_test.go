package bench

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"runtime/pprof"

	"github.com/google/pprof/profile"
)

// upstreamLabel marks, in CPU profiles, the work the lab's in-process upstream does: Portcullis and the upstream
// share one process here, and a CPU figure for Portcullis must leave the upstream's share out.
const upstreamLabel = "bench-side"

// labelUpstream runs every request of the upstream under the upstreamLabel label.
func labelUpstream(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pprof.Do(r.Context(), pprof.Labels(upstreamLabel, "upstream"), func(ctx context.Context) {
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	})
}

// cpuShare profiles the CPU while op runs, under the label of Portcullis's side, and returns Portcullis's share
// of the samples: those taken under its label, plus the unlabelled ones (the runtime's GC and scheduler, and
// connection goroutines started before op) in the proportion of Portcullis's to the upstream's labelled samples.
// ok is false when profiling was not possible (a -cpuprofile of the whole run holds the profiler).
func cpuShare(op func()) (share float64, ok bool) {
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		op()
		return 0, false
	}
	pprof.Do(context.Background(), pprof.Labels(upstreamLabel, "portcullis"), func(context.Context) { op() })
	pprof.StopCPUProfile()
	if path := os.Getenv("PORTCULLIS_BENCH_BURST_PROFILE"); path != "" {
		_ = os.WriteFile(path, buf.Bytes(), 0o644) // for go tool pprof -tagfocus bench-side=portcullis
	}
	p, err := profile.Parse(&buf)
	if err != nil || len(p.SampleType) < 2 {
		return 0, false
	}
	by := map[string]float64{}
	var all float64
	for _, s := range p.Sample {
		v := float64(s.Value[1]) // cpu nanoseconds
		all += v
		if side := s.Label[upstreamLabel]; len(side) > 0 {
			by[side[0]] += v
		}
	}
	own, up := by["portcullis"], by["upstream"]
	if all == 0 || own+up == 0 {
		return 0, false
	}
	unlabelled := all - own - up
	return (own + unlabelled*own/(own+up)) / all, true
}
