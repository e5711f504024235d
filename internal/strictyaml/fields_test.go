package strictyaml

import (
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "", 3},
		{"", "abc", 3},
		{"timeout", "timeout", 0},
		{"timout", "timeout", 1},
		{"lisen", "listen", 1},
		{"kitten", "sitting", 3},
		{"adress", "addrs", 3}, // too far to suggest
		{strings.Repeat("a", 65), "a", 1 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.a+"/"+tt.b, func(t *testing.T) {
			if got := editDistance(tt.a, tt.b); got != tt.want {
				t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	fields := map[string]int{"listen": 0, "opsListen": 1, "timeout": 2, "tags": 3, "tls": 4}
	tests := []struct{ key, want string }{
		{"opslisten", "opsListen"}, // case alone
		{"timout", "timeout"},
		{"tag", "tags"},
		{"tsl", "tls"},  // a swap is two edits
		{"tab", "tags"}, // two edits from both tags and tls: the first in order wins
		{"bogus", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if got := suggest(tt.key, fields); got != tt.want {
				t.Errorf("suggest(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestFieldsOf(t *testing.T) {
	type s struct {
		Plain   string
		Tagged  string `yaml:"tag,omitempty"`
		Skipped string `yaml:"-"`
		//lint:ignore U1000 an unexported field: the decoder must leave it alone
		private string
		Last    int `yaml:",omitempty"`
	}
	want := map[string]int{"plain": 0, "tag": 1, "last": 4}
	if diff := cmp.Diff(want, fieldsOf(reflect.TypeFor[s]())); diff != "" {
		t.Errorf("fieldsOf (-want +got):\n%s", diff)
	}
}
