package configs

import (
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{name: "seconds", in: "30s", want: 30 * time.Second},
		{name: "minutes", in: "5m", want: 5 * time.Minute},
		{name: "hours", in: "24h", want: 24 * time.Hour},
		{name: "days", in: "7d", want: 7 * 24 * time.Hour},
		{name: "fractional days", in: "1.5d", want: 36 * time.Hour},
		{name: "days and hours", in: "1d12h", want: 36 * time.Hour},
		{name: "compound", in: "1h30m", want: 90 * time.Minute},
		{name: "zero", in: "0", want: 0},
		{name: "negative days", in: "-2d", want: -48 * time.Hour},
		{name: "spaces trimmed", in: " 10s ", want: 10 * time.Second},
		{name: "no unit", in: "30", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "garbage", in: "soon", wantErr: true},
		{name: "d not first", in: "1h1d", wantErr: true},
		{name: "days then sign", in: "1d-1h", wantErr: true},
		{name: "exponent days", in: "1e3d", wantErr: true},
		{name: "too many days", in: "999999999999d", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDuration(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseDuration(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && time.Duration(got) != tt.want {
				t.Errorf("parseDuration(%q) = %v, want %v", tt.in, time.Duration(got), tt.want)
			}
		})
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{7 * 24 * time.Hour, "7d"},
		{24 * time.Hour, "1d"},
		{36 * time.Hour, "36h"},
		{90 * time.Minute, "1h30m"},
		{time.Hour, "1h"},
		{5 * time.Minute, "5m"},
		{30 * time.Second, "30s"},
		{1500 * time.Millisecond, "1.5s"},
		{61 * time.Second, "1m1s"},
		{0, "0s"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			d := Duration(tt.in)
			if got := d.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			back, err := parseDuration(d.String())
			if err != nil || back != d {
				t.Errorf("round trip of %q = %v, %v", d.String(), back, err)
			}
			out, err := yaml.Marshal(struct{ D Duration }{d})
			if err != nil {
				t.Fatal(err)
			}
			if want := "d: " + tt.want + "\n"; string(out) != want {
				t.Errorf("yaml = %q, want %q", out, want)
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{name: "plain bytes", in: "1048576", want: 1 << 20},
		{name: "bytes unit", in: "512B", want: 512},
		{name: "KB decimal", in: "100KB", want: 100_000},
		{name: "KiB binary", in: "100KiB", want: 100 << 10},
		{name: "MiB", in: "4MiB", want: 4 << 20},
		{name: "MiB lowercase", in: "4mib", want: 4 << 20},
		{name: "GiB", in: "10GiB", want: 10 << 30},
		{name: "GB", in: "10GB", want: 10_000_000_000},
		{name: "TiB", in: "2TiB", want: 2 << 40},
		{name: "space before unit", in: "512 MiB", want: 512 << 20},
		{name: "fraction", in: "1.5KiB", want: 1536},
		{name: "decimal fraction exact", in: "1.1MB", want: 1_100_000},
		{name: "zero", in: "0", want: 0},
		{name: "fraction of a byte", in: "0.5B", wantErr: true},
		{name: "negative", in: "-1", wantErr: true},
		{name: "unknown unit", in: "10XB", wantErr: true},
		{name: "bare prefix", in: "10K", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "overflow", in: "9000PiB", wantErr: true},
		{name: "overflow bytes", in: "99999999999999999999", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseByteSize(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseByteSize(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && int64(got) != tt.want {
				t.Errorf("parseByteSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{4 * mib, "4MiB"},
		{10 * gib, "10GiB"},
		{100_000, "100KB"},
		{1536, "1536"},
		{1024, "1KiB"},
		{1000, "1KB"},
		{0, "0"},
		{123, "123"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			back, err := parseByteSize(tt.in.String())
			if err != nil || back != tt.in {
				t.Errorf("round trip of %q = %v, %v", tt.in.String(), back, err)
			}
		})
	}
}
