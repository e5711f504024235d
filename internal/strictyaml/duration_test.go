package strictyaml

import (
	"errors"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr string // exact error text; "" for none
	}{
		{name: "seconds", in: "30s", want: 30 * time.Second},
		{name: "compound", in: "1h30m", want: 90 * time.Minute},
		{name: "days", in: "7d", want: 7 * 24 * time.Hour},
		{name: "fractional days", in: "1.5d", want: 36 * time.Hour},
		{name: "days and hours", in: "1d12h", want: 36 * time.Hour},
		{name: "zero", in: "0", want: 0},
		{name: "negative days", in: "-2d", want: -48 * time.Hour},
		{name: "plus sign", in: "+1h", want: time.Hour},
		{name: "spaces trimmed", in: " 10s ", want: 10 * time.Second},
		{name: "empty", in: " ", wantErr: "empty duration"},
		{name: "no unit", in: "30", wantErr: `invalid duration "30" (want e.g. 30s, 5m, 24h, 7d)`},
		{name: "garbage quoted trimmed", in: " soon ", wantErr: `invalid duration "soon" (want e.g. 30s, 5m, 24h, 7d)`},
		{name: "d not first", in: "1h1d", wantErr: `invalid duration "1h1d" (want e.g. 30s, 5m, 24h, 7d)`},
		{name: "days then sign", in: "1d-1h", wantErr: `invalid duration "1d-1h" (want e.g. 30s, 5m, 24h, 7d)`},
		{name: "days then garbage", in: "1dx", wantErr: `invalid duration "1dx" (want e.g. 30s, 5m, 24h, 7d)`},
		{name: "exponent days", in: "1e3d", wantErr: `invalid duration "1e3d" (want e.g. 30s, 5m, 24h, 7d)`},
		{name: "two signs", in: "--1d", wantErr: `invalid duration "--1d" (want e.g. 30s, 5m, 24h, 7d)`},
		{name: "too many days", in: "999999999999d", wantErr: `duration "999999999999d" is too long`},
		{name: "too many negative days", in: "-999999999999d", wantErr: `duration "-999999999999d" is too long`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseDuration(%q) = %v, %v; want error %s", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
	var de *DurationError
	if _, err := ParseDuration("soon"); !errors.As(err, &de) || de.Text != "soon" {
		t.Errorf("ParseDuration(soon) error %#v is not a *DurationError", err)
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{7 * 24 * time.Hour, "7d"},
		{24 * time.Hour, "1d"},
		{-48 * time.Hour, "-2d"},
		{36 * time.Hour, "36h"},
		{90 * time.Minute, "1h30m"},
		{time.Hour, "1h"},
		{5 * time.Minute, "5m"},
		{1500 * time.Millisecond, "1.5s"},
		{61 * time.Second, "1m1s"},
		{0, "0s"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := FormatDuration(tt.in)
			if got != tt.want {
				t.Errorf("FormatDuration(%v) = %q, want %q", tt.in, got, tt.want)
			}
			if back, err := ParseDuration(got); err != nil || back != tt.in {
				t.Errorf("round trip of %q = %v, %v", got, back, err)
			}
		})
	}
}
