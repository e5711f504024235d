package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvBench turns the harness on; without it TestBench skips.
const EnvBench = "PORTCULLIS_BENCH"

// result is one measured number.
type result struct {
	Row    string  `json:"row"`
	System string  `json:"system"`
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	// Lower says a smaller value is better (latencies, times).
	Lower bool `json:"lowerIsBetter,omitempty"`
}

// check is a target of the performance issue and what was measured against it.
type check struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

// report collects results and checks; safe for concurrent use.
type report struct {
	mu      sync.Mutex
	Started time.Time `json:"started"`
	Took    string    `json:"took"`
	Machine string    `json:"machine"`
	Command string    `json:"command"`
	Results []result  `json:"results"`
	Checks  []check   `json:"checks"`
	Notes   []string  `json:"notes"`
}

func (r *report) add(row, system, metric string, v float64, lower bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Results = append(r.Results, result{Row: row, System: system, Metric: metric, Value: v, Lower: lower})
}

func (r *report) check(name, target, measured string, met bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Checks = append(r.Checks, check{Name: name, Target: target, Measured: measured, Met: met})
}

func (r *report) note(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = append(r.Notes, fmt.Sprintf(format, a...))
}

// The systems a row compares.
const (
	sysDirect       = "direct"
	sysDistribution = "distribution-proxy"
	sysPortcullis   = "portcullis"
	sysGated        = "portcullis+gate"
)

var systemOrder = []string{sysDirect, sysDistribution, sysPortcullis, sysGated}

// TestBench runs every row and writes the table and results.json. PORTCULLIS_BENCH_ONLY, a comma-separated list
// of section names (rows, admission, herd, memory, s3, redis, fleet), runs only those.
func TestBench(t *testing.T) {
	if os.Getenv(EnvBench) == "" {
		t.Skipf("the performance harness runs with %s=1 (make bench)", EnvBench)
	}
	rep := &report{Started: time.Now(), Machine: machine(), Command: "make bench"}
	only := map[string]bool{}
	for _, s := range strings.Split(os.Getenv("PORTCULLIS_BENCH_ONLY"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			only[s] = true
		}
	}
	sections := []struct {
		name string
		run  func(t *testing.T, rep *report)
	}{
		{"rows", benchRows},
		{"admission", benchAdmission},
		{"herd", benchHerd},
		{"memory", benchMemory},
		{"s3", benchS3},
		{"redis", benchRedis},
		{"fleet", benchFleet},
		{"rego", benchRego},
	}
	for _, s := range sections {
		if len(only) > 0 && !only[s.name] {
			continue
		}
		start := time.Now()
		t.Run(s.name, func(t *testing.T) { s.run(t, rep) })
		t.Logf("section %s took %s", s.name, time.Since(start).Round(time.Second))
	}
	rep.Took = time.Since(rep.Started).Round(time.Second).String()
	printTable(os.Stdout, rep)
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("results.json", append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Checks {
		if !c.Met {
			t.Logf("target not met: %s: want %s, measured %s", c.Name, c.Target, c.Measured)
		}
	}
}

// machine describes where the numbers were taken.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = ", load average " + strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return fmt.Sprintf("%s, %d cores, %s %s/%s%s", cpu, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, load)
}

// printTable writes one line per row and metric: each system's value, and Portcullis's ratio to the direct pull
// and to Distribution (value / other: above 1 is more for throughputs, slower for latencies).
func printTable(w io.Writer, rep *report) {
	type key struct{ row, metric string }
	var keys []key
	vals := map[key]map[string]float64{}
	lower := map[key]bool{}
	for _, r := range rep.Results {
		k := key{r.Row, r.Metric}
		if vals[k] == nil {
			vals[k] = map[string]float64{}
			keys = append(keys, k)
		}
		vals[k][r.System] = r.Value
		lower[k] = r.Lower
	}
	fmt.Fprintf(w, "\nPortcullis performance (%s; %s; took %s)\n\n", rep.Command, rep.Machine, rep.Took)
	fmt.Fprintf(w, "| row | metric | %s | portcullis / direct | portcullis / distribution |\n", strings.Join(systemOrder, " | "))
	fmt.Fprintf(w, "|---|---|%s---|---|\n", strings.Repeat("---|", len(systemOrder)))
	for _, k := range keys {
		v := vals[k]
		cells := make([]string, 0, len(systemOrder))
		for _, s := range systemOrder {
			if x, ok := v[s]; ok {
				cells = append(cells, format(x))
			} else {
				cells = append(cells, "")
			}
		}
		ours, ok := v[sysGated]
		if !ok {
			ours, ok = v[sysPortcullis]
		}
		ratio := func(other string) string {
			o, has := v[other]
			if !ok || !has || o == 0 {
				return ""
			}
			return fmt.Sprintf("%.2fx", ours/o)
		}
		dir := "higher is better"
		if lower[k] {
			dir = "lower is better"
		}
		fmt.Fprintf(w, "| %s | %s (%s) | %s | %s | %s |\n", k.row, k.metric, dir, strings.Join(cells, " | "), ratio(sysDirect), ratio(sysDistribution))
	}
	if len(rep.Checks) > 0 {
		fmt.Fprintf(w, "\n| target | wanted | measured | met |\n|---|---|---|---|\n")
		for _, c := range rep.Checks {
			met := "yes"
			if !c.Met {
				met = "NO"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", c.Name, c.Target, c.Measured, met)
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "\n- %s", n)
	}
	fmt.Fprintln(w)
}

func format(x float64) string {
	switch {
	case x == 0:
		return "0"
	case x >= 1000:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.3g", x)
	}
}

// percentile returns the p-th percentile (0..100) of ds, which it sorts.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
