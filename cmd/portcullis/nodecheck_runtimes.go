package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// anyOtherRegistry names, in findings, every registry the node has no entry of its own for.
const anyOtherRegistry = "*"

// nodeFinding is nodecheck's verdict on one registry of one runtime: can a pull of it reach the registry (or anything
// else) without passing Portcullis?
type nodeFinding struct {
	Runtime  string `json:"runtime"`
	Registry string `json:"registry"`
	Bypass   bool   `json:"bypass"`
	// Reason says why, naming the file and the setting.
	Reason string `json:"reason"`
	// Notes are things that break pulls (without a bypass) or are worth a look.
	Notes []string `json:"notes,omitempty"`
}

// portcullisSet is the set of endpoints that are Portcullis, as host:port with the scheme's default port
// filled in.
type portcullisSet map[string]bool

// parsePortcullis accepts http(s)://host[:port] or host[:port] (https assumed, as containerd does).
func (s portcullisSet) add(raw string) error {
	hp, err := endpointHostPort(raw)
	if err != nil {
		return fmt.Errorf("--portcullis %q: %w", raw, err)
	}
	s[hp] = true
	return nil
}

func (s portcullisSet) has(endpoint string) bool {
	hp, err := endpointHostPort(endpoint)
	return err == nil && s[hp]
}

// endpointHostPort turns an endpoint as runtimes spell it (URL, or host[:port][/path]) into host:port,
// lower-case, with 443 or 80 for a missing port.
func endpointHostPort(raw string) (string, error) {
	s := raw
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", errors.New("want http(s)://HOST[:PORT] or HOST[:PORT]")
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port), nil
}

// checkContainerd judges containerd's config_path dir for each registry (and for every other registry, through
// _default), the way containerd 1.6 reads it: the strictest of the versions in use (1.7 and 2.x accept a file
// without [host], 1.6 does not and then pulls from the registry itself).
func checkContainerd(dir string, registries []string, pc portcullisSet) []nodeFinding {
	all := slices.Clone(registries)
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if e.IsDir() && e.Name() != "_default" && !strings.HasPrefix(e.Name(), ".") {
				all = append(all, containerdHostFromDir(e.Name()))
			}
		}
	}
	var out []nodeFinding
	for _, r := range dedupe(all) {
		out = append(out, checkContainerdRegistry(dir, r, pc))
	}
	return append(out, checkContainerdRegistry(dir, anyOtherRegistry, pc))
}

// containerdHostFromDir undoes containerd's "host_port_" directory spelling.
func containerdHostFromDir(name string) string {
	if strings.HasSuffix(name, "_") {
		if i := strings.LastIndex(name[:len(name)-1], "_"); i > 0 && strings.Trim(name[i+1:len(name)-1], "0123456789") == "" {
			return name[:i] + ":" + name[i+1:len(name)-1]
		}
	}
	return name
}

// containerdHostDir returns the directory containerd uses for registry (its own spellings first, then
// _default), or "" when there is none.
func containerdHostDir(dir, registry string) string {
	var candidates []string
	if registry != anyOtherRegistry {
		if i := strings.LastIndex(registry, ":"); i > 0 {
			candidates = append(candidates, registry[:i]+"_"+registry[i+1:]+"_")
		}
		candidates = append(candidates, registry)
	}
	for _, c := range append(candidates, "_default") {
		p := filepath.Join(dir, c)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p
		}
	}
	return ""
}

func checkContainerdRegistry(dir, registry string, pc portcullisSet) nodeFinding {
	f := nodeFinding{Runtime: "containerd", Registry: registry}
	itself := registry
	if registry == anyOtherRegistry {
		itself = "the registry itself"
	} else if registry == "docker.io" {
		itself = "registry-1.docker.io"
	}
	hostDir := containerdHostDir(dir, registry)
	if hostDir == "" {
		f.Bypass = true
		if registry == anyOtherRegistry {
			f.Reason = fmt.Sprintf("no %s directory: containerd pulls every registry without a directory of its own from the registry itself", filepath.Join(dir, "_default"))
		} else {
			f.Reason = fmt.Sprintf("no %s or _default directory: containerd pulls from %s itself", filepath.Join(dir, registry), itself)
		}
		return f
	}
	path := filepath.Join(hostDir, "hosts.toml")
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		f.Bypass, f.Reason = true, fmt.Sprintf("cannot read %s (%v): cannot tell where containerd pulls from", path, err)
		return f
	}
	if len(b) == 0 {
		f.Bypass, f.Reason = true, fmt.Sprintf("no hosts.toml in %s: containerd pulls from %s itself", hostDir, itself)
		return f
	}
	hosts, err := parseContainerdHosts(b)
	if err != nil {
		f.Bypass = true
		f.Reason = fmt.Sprintf("containerd 1.6 cannot parse %s (%v): it logs \"failed to decode hosts.toml\" and pulls from %s itself", path, err, itself)
		return f
	}
	var resolvers int
	for _, h := range hosts {
		if h.caps&capResolve != 0 {
			resolvers++
		}
		ca := h.ca
		for _, c := range ca {
			if !filepath.IsAbs(c) {
				c = filepath.Join(hostDir, c)
			}
			if _, err := os.Stat(c); err != nil {
				f.Notes = append(f.Notes, fmt.Sprintf("%s: ca %s is missing: pulls through %s fail", path, c, h.name))
			}
		}
		if h.skipVerify {
			f.Notes = append(f.Notes, fmt.Sprintf("%s: skip_verify for %s: anyone on the network path can answer in Portcullis' name", path, h.name))
		}
		if h.server == "" {
			f.Bypass = true
			f.Reason = fmt.Sprintf("%s has no server: after Portcullis refuses (403), containerd tries %s itself", path, itself)
			return f
		}
		if !pc.has(h.server) {
			f.Bypass = true
			what := "host"
			if h.root {
				what = "server"
			}
			f.Reason = fmt.Sprintf("%s: %s %s is not Portcullis: containerd tries it when the one before fails (a 403 included)", path, what, h.server)
			return f
		}
	}
	if resolvers == 0 {
		f.Notes = append(f.Notes, path+": no host may resolve: every tag pull fails")
	}
	f.Reason = fmt.Sprintf("every host in %s is Portcullis", path)
	return f
}

// containerd host capabilities.
const (
	capPull = 1 << iota
	capResolve
	capPush
)

// containerdHost is one entry of a parsed hosts.toml: a [host] table, or the root (server) last.
type containerdHost struct {
	name       string // as written
	server     string // the endpoint, "" for the root without server (the registry itself)
	root       bool
	caps       int
	ca         []string
	skipVerify bool
}

// containerdHostFields are the fields containerd reads from the root and from each [host] table.
type containerdHostFields struct {
	Capabilities []string       `toml:"capabilities"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	SkipVerify   *bool          `toml:"skip_verify"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
}

// parseContainerdHosts reads a hosts.toml as containerd 1.6 does, failing where it fails: TOML syntax, a missing
// (or non-table) host, a field of the wrong type, an unknown capability, a server or host that is not a URL.
func parseContainerdHosts(b []byte) ([]containerdHost, error) {
	var raw map[string]any
	if err := toml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("TOML: %w", err)
	}
	if _, ok := raw["host"].(map[string]any); !ok {
		return nil, errors.New("invalid `host` tree: no [host.\"...\"] table")
	}
	var doc struct {
		containerdHostFields
		Server string                          `toml:"server"`
		Host   map[string]containerdHostFields `toml:"host"`
	}
	if err := toml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(doc.Host))
	for n := range doc.Host {
		names = append(names, n)
	}
	sort.Strings(names) // containerd keeps file order; every one is checked, so order does not matter here
	var hosts []containerdHost
	for _, n := range names {
		h, err := containerdHostConfig(n, doc.Host[n])
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	root, err := containerdHostConfig(doc.Server, doc.containerdHostFields)
	if err != nil {
		return nil, err
	}
	root.root = true
	return append(hosts, root), nil
}

func containerdHostConfig(server string, f containerdHostFields) (containerdHost, error) {
	h := containerdHost{name: server, server: server}
	if server != "" {
		s := server
		if !strings.HasPrefix(s, "http") {
			s = "https://" + s
		}
		if _, err := url.Parse(s); err != nil {
			return h, fmt.Errorf("unable to parse server %v: %w", server, err)
		}
	}
	if len(f.Capabilities) == 0 {
		h.caps = capPull | capResolve | capPush
	}
	for _, c := range f.Capabilities {
		switch strings.ToLower(c) {
		case "pull":
			h.caps |= capPull
		case "resolve":
			h.caps |= capResolve
		case "push":
			h.caps |= capPush
		default:
			return h, fmt.Errorf("unknown capability %v", c)
		}
	}
	switch ca := f.CA.(type) {
	case nil:
	case string:
		h.ca = []string{ca}
	case []any:
		for _, x := range ca {
			s, ok := x.(string)
			if !ok {
				return h, fmt.Errorf("unable to cast %v to string", x)
			}
			h.ca = append(h.ca, s)
		}
	default:
		return h, fmt.Errorf("invalid type %v for \"ca\"", ca)
	}
	switch c := f.Client.(type) {
	case nil, string:
	case []any:
		for _, p := range c {
			switch pair := p.(type) {
			case string:
			case []any:
				if len(pair) != 2 {
					return h, fmt.Errorf("invalid pair %v for \"client\"", p)
				}
				for _, x := range pair {
					if _, ok := x.(string); !ok {
						return h, fmt.Errorf("unable to cast %v to string", x)
					}
				}
			default:
				return h, fmt.Errorf("invalid type %T for \"client\"", p)
			}
		}
	default:
		return h, fmt.Errorf("invalid type %v for \"client\"", c)
	}
	for k, v := range f.Header {
		switch v := v.(type) {
		case string:
		case []any:
			for _, x := range v {
				if _, ok := x.(string); !ok {
					return h, fmt.Errorf("unable to cast %v to string", x)
				}
			}
		default:
			return h, fmt.Errorf("invalid type %v for header %q", v, k)
		}
	}
	h.skipVerify = f.SkipVerify != nil && *f.SkipVerify
	return h, nil
}

// checkDocker judges dockerd's daemon.json. Docker can mirror only Docker Hub, and it falls back to Docker Hub
// when a mirror refuses (a 403 included); every other registry it pulls directly. So no Docker node is enforced
// by its configuration: the findings say where each pull goes.
func checkDocker(path string, registries []string, pc portcullisSet) []nodeFinding {
	var mirrors []string
	reason := ""
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		reason = path + " does not exist"
	case err != nil:
		reason = fmt.Sprintf("cannot read %s: %v", path, err)
	default:
		var doc struct {
			Mirrors []string `json:"registry-mirrors"`
		}
		if len(bytes.TrimSpace(b)) > 0 {
			if err := json.Unmarshal(b, &doc); err != nil {
				reason = fmt.Sprintf("dockerd cannot parse %s: %v", path, err)
			}
		}
		mirrors = doc.Mirrors
	}
	var out []nodeFinding
	for _, r := range dedupe(append([]string{"docker.io"}, registries...)) {
		f := nodeFinding{Runtime: "docker", Registry: r, Bypass: true}
		switch {
		case reason != "":
			f.Reason = reason + ": dockerd pulls from the registry itself"
		case r != "docker.io":
			f.Reason = fmt.Sprintf("dockerd has no mirror setting for %s: it pulls from %s itself", r, r)
		case len(mirrors) == 0:
			f.Reason = path + " has no registry-mirrors: dockerd pulls from registry-1.docker.io itself"
		default:
			through := slices.ContainsFunc(mirrors, pc.has)
			if through {
				f.Reason = path + ": registry-mirrors go through Portcullis, but dockerd falls back to registry-1.docker.io when a mirror refuses (a 403 included)"
			} else {
				f.Reason = fmt.Sprintf("%s: registry-mirrors %v are not Portcullis, and dockerd falls back to registry-1.docker.io", path, mirrors)
			}
		}
		out = append(out, f)
	}
	return append(out, nodeFinding{Runtime: "docker", Registry: anyOtherRegistry, Bypass: true,
		Reason: "dockerd pulls every other registry from the registry itself"})
}

// crioRegistry is one [[registry]] of containers-registries.conf(5), version 2.
type crioRegistry struct {
	Prefix             string         `toml:"prefix"`
	Location           string         `toml:"location"`
	Insecure           bool           `toml:"insecure"`
	Blocked            bool           `toml:"blocked"`
	MirrorByDigestOnly bool           `toml:"mirror-by-digest-only"`
	Mirrors            []crioEndpoint `toml:"mirror"`
}

type crioEndpoint struct {
	Location       string `toml:"location"`
	Insecure       bool   `toml:"insecure"`
	PullFromMirror string `toml:"pull-from-mirror"`
}

// checkCRIO judges a registries.conf as containers/image (CRI-O, Podman) reads it: the [[registry]] with the
// longest matching prefix gives the sources, its mirrors first and its location last, and a source is refused
// only when the [[registry]] matching that source's own address is blocked. So a mirror through Portcullis
// enforces only when the original location is blocked (or is Portcullis itself).
//
// registries.conf has no catch-all; a signature policy (policy.json) whose default is reject stands in for one:
// then an image of a registry that no docker scope accepts is refused, and each accepted scope's registry is
// checked like the others.
func checkCRIO(path, policyPath string, registries []string, pc portcullisSet) []nodeFinding {
	var doc struct {
		Registries []crioRegistry `toml:"registry"`
		V1         any            `toml:"registries"`
	}
	b, err := os.ReadFile(path)
	if err == nil {
		err = toml.Unmarshal(b, &doc)
		if err == nil && doc.V1 != nil {
			err = errors.New("version 1 format ([registries.search]): it has no mirrors; write version 2 ([[registry]])")
		}
	}
	all := slices.Clone(registries)
	catchAll := nodeFinding{Runtime: "cri-o", Registry: anyOtherRegistry, Bypass: true,
		Reason: "registries.conf has no catch-all: CRI-O pulls every registry without a [[registry]] entry from the registry itself (a policy.json whose default is reject closes this; see --signature-policy)"}
	if policyPath != "" {
		scopes, rejects, perr := readSignaturePolicy(policyPath)
		switch {
		case perr != nil:
			catchAll.Reason = perr.Error()
		case !rejects:
			catchAll.Reason = policyPath + ": default is not reject: CRI-O pulls every registry without a [[registry]] entry from the registry itself"
		default:
			catchAll.Bypass = false
			catchAll.Reason = policyPath + ": default is reject: images of registries no docker scope accepts are refused"
			all = append(all, scopes...)
		}
	}
	for _, r := range doc.Registries {
		p := r.Prefix
		if p == "" {
			p = r.Location
		}
		if p != "" && !strings.HasPrefix(p, "*.") {
			all = append(all, strings.SplitN(p, "/", 2)[0])
		}
	}
	var out []nodeFinding
	for _, reg := range dedupe(all) {
		f := nodeFinding{Runtime: "cri-o", Registry: reg}
		if err != nil {
			f.Bypass, f.Reason = true, fmt.Sprintf("cannot use %s (%v): CRI-O refuses to pull, and cannot be shown to pull through Portcullis", path, err)
			out = append(out, f)
			continue
		}
		crioJudge(&f, path, reg, doc.Registries, pc)
		out = append(out, f)
	}
	return append(out, catchAll)
}

// readSignaturePolicy reads containers-policy.json(5): the registries its docker transport accepts images of,
// and whether its default requirement is reject.
func readSignaturePolicy(path string) (registries []string, rejects bool, err error) {
	var doc struct {
		Default    []struct{ Type string } `json:"default"`
		Transports map[string]map[string][]struct {
			Type string `json:"type"`
		} `json:"transports"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("cannot read %s: %v", path, err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, false, fmt.Errorf("CRI-O cannot parse %s: %v", path, err)
	}
	rejects = len(doc.Default) > 0
	for _, r := range doc.Default {
		rejects = rejects && r.Type == "reject"
	}
	for scope, reqs := range doc.Transports["docker"] {
		reject := len(reqs) > 0
		for _, r := range reqs {
			reject = reject && r.Type == "reject"
		}
		if !reject && scope != "" {
			registries = append(registries, strings.SplitN(strings.TrimPrefix(scope, "*."), "/", 2)[0])
		}
	}
	sort.Strings(registries)
	return registries, rejects, nil
}

func crioJudge(f *nodeFinding, path, reg string, regs []crioRegistry, pc portcullisSet) {
	ref := reg + "/any/image"
	r := crioFind(regs, ref)
	if r == nil {
		f.Bypass, f.Reason = true, fmt.Sprintf("%s has no [[registry]] for %s: CRI-O pulls from %s itself", path, reg, reg)
		return
	}
	location := r.Location
	if location == "" {
		location = r.Prefix
	}
	type source struct {
		location string
		mirror   bool
		tags     bool // used for pulls by tag
	}
	var sources []source
	for _, m := range r.Mirrors {
		tags := !r.MirrorByDigestOnly && m.PullFromMirror != "digest-only"
		sources = append(sources, source{location: m.Location, mirror: true, tags: tags})
	}
	sources = append(sources, source{location: location, tags: true})
	tagSources := 0
	for _, s := range sources {
		if blocked := crioFind(regs, s.location+"/any/image"); blocked != nil && blocked.Blocked {
			continue // containers/image refuses this source
		}
		if s.tags {
			tagSources++
		}
		if pc.has(strings.SplitN(s.location, "/", 2)[0]) {
			continue
		}
		f.Bypass = true
		if s.mirror {
			f.Reason = fmt.Sprintf("%s: mirror %s of %s is not Portcullis", path, s.location, reg)
		} else if len(r.Mirrors) > 0 {
			f.Reason = fmt.Sprintf("%s: %s is not blocked, so when the mirror refuses (a 403 included) CRI-O pulls from %s itself (set blocked = true, location = prefix)", path, reg, location)
		} else {
			f.Reason = fmt.Sprintf("%s: %s has no mirror and its location %s is not Portcullis", path, reg, location)
		}
		return
	}
	if tagSources == 0 {
		f.Notes = append(f.Notes, path+": no source for pulls by tag (digest-only mirrors, location blocked): tag pulls fail")
	}
	f.Reason = fmt.Sprintf("%s: every source of %s that is not blocked is Portcullis", path, reg)
}

// crioFind is containers/image's FindRegistry: the [[registry]] whose prefix matches ref, longest first.
func crioFind(regs []crioRegistry, ref string) *crioRegistry {
	var best *crioRegistry
	bestLen := -1
	for i := range regs {
		p := regs[i].Prefix
		if p == "" {
			p = regs[i].Location
		}
		if !crioPrefixMatches(p, ref) || len(p) <= bestLen {
			continue
		}
		best, bestLen = &regs[i], len(p)
	}
	return best
}

func crioPrefixMatches(prefix, ref string) bool {
	if prefix == "" {
		return false
	}
	if strings.HasPrefix(prefix, "*.") {
		host := strings.SplitN(ref, "/", 2)[0]
		return strings.HasSuffix(host, prefix[1:])
	}
	if !strings.HasPrefix(ref, prefix) {
		return false
	}
	return len(ref) == len(prefix) || strings.ContainsRune("/:@", rune(ref[len(prefix)]))
}

// dedupe keeps the first of each name, in order.
func dedupe(names []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
