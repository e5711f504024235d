package configs

import (
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/strictyaml"
	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in YAML as a string: "30s", "5m", "24h" or, beyond
// time.ParseDuration, whole or fractional days with a "d" suffix ("7d", "1.5d", "1d12h").
// Plain numbers without a unit are rejected (except "0"), so "30" is never read as 30ns.
type Duration time.Duration

// parseDuration parses s as a Duration (see strictyaml.ParseDuration): a sign is allowed,
// Validate rejects negative values where they make no sense.
func parseDuration(s string) (Duration, error) {
	d, err := strictyaml.ParseDuration(s)
	return Duration(d), err
}

// String formats d compactly so that it parses back to the same value: whole days as "7d",
// otherwise like time.Duration without trailing zero units ("1h30m", "5m", "1.5s").
func (d Duration) String() string { return strictyaml.FormatDuration(time.Duration(d)) }

// UnmarshalYAML reads a scalar such as "30s" or "7d".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration string such as 30s, got a %s", strictyaml.KindName(n))
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes d as a string (see String).
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText writes d as a string (see String), so JSON output matches YAML.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses the same forms as UnmarshalYAML.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ByteSize is a size in bytes written in YAML as a plain integer (bytes) or a number with a
// unit: B, KB, MB, GB, TB, PB (powers of 1000) or KiB, MiB, GiB, TiB, PiB (powers of 1024).
// Units are case-insensitive; fractions must come out as whole bytes ("1.5KiB" = 1536).
type ByteSize int64

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
	tib = 1 << 40
	pib = 1 << 50
)

var (
	sizeRE    = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$`)
	sizeUnits = map[string]int64{
		"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15,
		"kib": kib, "mib": mib, "gib": gib, "tib": tib, "pib": pib,
	}
	// formatUnits are tried in order when formatting: exact binary units first.
	formatUnits = []struct {
		name string
		size int64
	}{
		{"PiB", pib}, {"TiB", tib}, {"GiB", gib}, {"MiB", mib}, {"KiB", kib},
		{"PB", 1e15}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	}
)

// parseByteSize parses "4MiB", "100KB", "1.5GiB" or a plain integer number of bytes.
func parseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("invalid size %q (want e.g. 512MiB, 10GiB, 100KB or a number of bytes)", s)
	}
	mult, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", s, m[2])
	}
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("invalid size %q: not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return ByteSize(r.Num().Int64()), nil
}

// String formats b with the largest unit that divides it exactly ("4MiB", "100KB"), or as a
// plain number of bytes.
func (b ByteSize) String() string {
	if b > 0 {
		for _, u := range formatUnits {
			if int64(b)%u.size == 0 {
				return strconv.FormatInt(int64(b)/u.size, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML reads a scalar such as 4MiB or 1048576.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a size such as 4MiB, got a %s", strictyaml.KindName(n))
	}
	v, err := parseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalYAML writes b as a string with a unit (see String), or an integer for plain bytes.
func (b ByteSize) MarshalYAML() (any, error) {
	s := b.String()
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	return s, nil
}

// MarshalText writes b as String does.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText parses the same forms as UnmarshalYAML.
func (b *ByteSize) UnmarshalText(t []byte) error {
	v, err := parseByteSize(string(t))
	if err != nil {
		return err
	}
	*b = v
	return nil
}
