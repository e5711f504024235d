package policy

import "testing"

func TestSeverityCompare(t *testing.T) {
	tests := []struct {
		name string
		s, t Severity
		want int
	}{
		{"none below unknown", SeverityNone, SeverityUnknown, -1},
		{"unknown below low", SeverityUnknown, SeverityLow, -1},
		{"low below medium", SeverityLow, SeverityMedium, -1},
		{"medium below high", SeverityMedium, SeverityHigh, -1},
		{"critical above high", SeverityCritical, SeverityHigh, 1},
		{"equal", SeverityHigh, SeverityHigh, 0},
		{"case does not matter", "CRITICAL", SeverityCritical, 0},
		{"an unknown name ranks as unknown", "severe", SeverityUnknown, 0},
		{"empty ranks as unknown", "", SeverityLow, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Compare(tt.t); got != tt.want {
				t.Errorf("%q.Compare(%q) = %d, want %d", tt.s, tt.t, got, tt.want)
			}
		})
	}
}
