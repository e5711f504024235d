package configs

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pelletier/go-toml/v2"
)

// TestExamplesValidate keeps the shipped examples loadable. quickstart.yaml names no files, so
// it goes through Load like a real start; production.yaml names files that exist only in a
// deployment, so it gets Parse and Validate without CheckFiles.
func TestExamplesValidate(t *testing.T) {
	// Secrets in the test environment must not change what the examples mean.
	for _, k := range []string{"PORTCULLIS_UPSTREAM_DOCKER_IO_USERNAME", "PORTCULLIS_UPSTREAM_DOCKER_IO_PASSWORD", "PORTCULLIS_REDIS_PASSWORD"} {
		t.Setenv(k, "")
	}
	t.Run("quickstart.yaml", func(t *testing.T) {
		c, err := Load("quickstart.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, u := range c.Upstreams {
			names = append(names, u.Name)
		}
		if diff := cmp.Diff([]string{"docker.io", "ghcr.io", "quay.io"}, names); diff != "" {
			t.Errorf("upstreams (-want +got):\n%s", diff)
		}
		if c.DefaultUpstream().Name != "docker.io" || c.Listen != "127.0.0.1:5000" ||
			c.OpsListen != "127.0.0.1:5001" || c.DataDir != "./portcullis-data" ||
			c.Content.Driver != "filesystem" || c.Cache.Redis.Enabled() || c.TLS.Enabled() {
			t.Errorf("quickstart is not the documented single-machine setup: %+v", c)
		}
		if got := c.Content.Parameters["rootdirectory"]; got != "portcullis-data/content" {
			t.Errorf("rootdirectory = %v", got)
		}
	})
	t.Run("production.yaml", func(t *testing.T) {
		data, err := os.ReadFile("production.yaml")
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(data, "production.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if !c.TLS.Enabled() || !c.Cache.Redis.Enabled() || c.Content.Driver != "s3aws" ||
			c.Log.Format != "json" || c.Content.MaxSize == 0 ||
			c.Content.Parameters["region"] == nil || c.Content.Parameters["bucket"] == nil {
			t.Errorf("production is not the documented fleet setup: %+v", c)
		}
	})
}

// hostsFile is the part of containerd's hosts.toml the examples use.
type hostsFile struct {
	Server       string   `toml:"server"`
	Capabilities []string `toml:"capabilities"`
	Host         map[string]struct {
		Capabilities []string `toml:"capabilities"`
		OverridePath bool     `toml:"override_path"`
	} `toml:"host"`
}

func TestClientExamples(t *testing.T) {
	for _, name := range []string{"containerd/hosts.toml", "containerd/_default-hosts.toml"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			var h hostsFile
			if err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&h); err != nil {
				t.Fatal(err)
			}
			mirror, ok := h.Host["http://127.0.0.1:5000"]
			if !ok {
				t.Fatalf("%s does not send pulls to Portcullis: %+v", name, h)
			}
			// The registry itself must never be pulled from, or a denied pull falls back past the gate: either
			// the server is push-only, or it is Portcullis too.
			pullOnly, pushOnly := []string{"pull", "resolve"}, []string{"push"}
			serverSafe := cmp.Equal(h.Capabilities, pushOnly) || (h.Server == "http://127.0.0.1:5000" && cmp.Equal(h.Capabilities, pullOnly))
			if !cmp.Equal(mirror.Capabilities, pullOnly) || !serverSafe || mirror.OverridePath {
				t.Errorf("%s: capabilities %v/%v, override_path %v", name, h.Capabilities, mirror.Capabilities, mirror.OverridePath)
			}
		})
	}
	t.Run("docker/daemon.json", func(t *testing.T) {
		data, err := os.ReadFile("docker/daemon.json")
		if err != nil {
			t.Fatal(err)
		}
		var d map[string][]string
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string][]string{"registry-mirrors": {"http://127.0.0.1:5000"}}, d); diff != "" {
			t.Errorf("daemon.json (-want +got):\n%s", diff)
		}
	})
	t.Run("crio/registries.conf", func(t *testing.T) {
		data, err := os.ReadFile("crio/registries.conf")
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			UnqualifiedSearchRegistries []string `toml:"unqualified-search-registries"`
			Registry                    []struct {
				Prefix   string `toml:"prefix"`
				Location string `toml:"location"`
				Blocked  bool   `toml:"blocked"`
				Mirror   []struct {
					Location string `toml:"location"`
					Insecure bool   `toml:"insecure"`
				} `toml:"mirror"`
			} `toml:"registry"`
		}
		if err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&r); err != nil {
			t.Fatal(err)
		}
		if len(r.Registry) == 0 {
			t.Fatal("no registries")
		}
		for _, reg := range r.Registry {
			if len(reg.Mirror) != 1 || reg.Mirror[0].Location != "127.0.0.1:5000/"+reg.Prefix || !reg.Mirror[0].Insecure {
				t.Errorf("registry %s: mirrors %+v, want 127.0.0.1:5000/%s over plain HTTP", reg.Prefix, reg.Mirror, reg.Prefix)
			}
			// containers/image falls back to the location after a mirror's 403 unless it is blocked.
			if !reg.Blocked || reg.Location != reg.Prefix {
				t.Errorf("registry %s: blocked %v, location %q: a denial would be pulled from the registry itself", reg.Prefix, reg.Blocked, reg.Location)
			}
		}
	})
}
