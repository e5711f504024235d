package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// nodeconfigMarker starts every hosts.toml that nodeconfig writes; removal touches only files that carry it.
const nodeconfigMarker = "# Written by portcullis nodeconfig"

// nodeconfigCAFile is the name of the Portcullis CA copy in each registry directory. hosts.toml names it
// relatively, and containerd (1.6 to 2.x) resolves a relative ca against that directory, so the file works
// whatever path the node's config_path has on the host (the DaemonSet sees it under another one).
const nodeconfigCAFile = "portcullis-ca.crt"

// nodeconfigBackupSuffix is appended to a hosts.toml that nodeconfig replaced; removal puts it back.
const nodeconfigBackupSuffix = ".pre-portcullis"

const nodeconfigUsage = `Usage: portcullis nodeconfig --dir DIR --portcullis URL [--ca FILE] [--remove] [--wait] REGISTRY...
       portcullis nodeconfig --retire NAMESPACE/NAME [--retire-timeout D]

Writes DIR/<REGISTRY>/hosts.toml for each REGISTRY (a host such as docker.io or registry.example.com:5000,
or _default for every registry without a directory of its own), sending every pull and resolve to
Portcullis at URL and never to the registry itself: Portcullis is both the [host] containerd tries and the
server it falls back to after a 403. DIR is containerd's config_path (e.g. /etc/containerd/certs.d).
Files are replaced atomically; a hosts.toml that nodeconfig did not write is kept as hosts.toml.pre-portcullis.

--retire (the Helm chart's pre-delete hook, in a pod) deletes the nodeconfig DaemonSet NAMESPACE/NAME in the
foreground and waits until it is gone, that is until every one of its pods has removed its node's files, while
the pods' permissions still exist (helm uninstall deletes the RBAC right after the DaemonSet otherwise).

`

// nodeconfigOptions is one nodeconfig invocation, parsed.
type nodeconfigOptions struct {
	dir        string
	portcullis *url.URL
	ca         []byte // PEM, nil without --ca
	registries []string
	remove     bool
	// wait keeps the process running after writing, rewriting the files every interval (so a hand edit does not
	// stay), and on SIGTERM removes them only if the DaemonSet named by owner is gone: a rolling update or a
	// restart leaves the node enforced, an uninstall leaves it clean.
	wait     bool
	interval time.Duration
	owner    string // NAMESPACE/NAME of the DaemonSet, for wait
	// retire is NAMESPACE/NAME of a DaemonSet to delete and wait out (see retireDaemonSet); it excludes the rest.
	retire        string
	retireTimeout time.Duration
}

func nodeconfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("nodeconfig", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, nodeconfigUsage)
		fs.PrintDefaults()
	}
	var o nodeconfigOptions
	var rawURL, caFile string
	fs.StringVar(&o.dir, "dir", "", "containerd's config_path, where one directory per registry goes (required)")
	fs.StringVar(&rawURL, "portcullis", "", "Portcullis registry URL as the node reaches it, http://HOST:PORT or https://HOST:PORT (required unless --remove)")
	fs.StringVar(&caFile, "ca", "", "PEM CA bundle that signs Portcullis' certificate, copied next to each hosts.toml (default: the node's system roots)")
	fs.BoolVar(&o.remove, "remove", false, "remove the files nodeconfig wrote for each REGISTRY (restoring a hosts.toml it replaced) instead of writing")
	fs.BoolVar(&o.wait, "wait", false, "after writing, keep running: rewrite every --interval, and on SIGTERM remove the files if --owner is gone")
	fs.DurationVar(&o.interval, "interval", time.Minute, "with --wait, how often the files are checked and rewritten")
	fs.StringVar(&o.owner, "owner", "", "with --wait, NAMESPACE/NAME of the DaemonSet running this; the files are removed on exit only once it is deleted (default: never removed on exit)")
	fs.StringVar(&o.retire, "retire", "", "delete the DaemonSet NAMESPACE/NAME in the foreground and wait until its pods are gone (the chart's uninstall hook); takes no other flags")
	fs.DurationVar(&o.retireTimeout, "retire-timeout", 5*time.Minute, "with --retire, how long to wait for the DaemonSet's pods to finish")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.retire != "" {
		if err := o.parseRetire(fs.NArg()); err != nil {
			return usageError{msg: "nodeconfig: " + err.Error()}
		}
		kc, err := inClusterKube()
		if err != nil {
			return fmt.Errorf("nodeconfig --retire: %w", err)
		}
		return o.retireDaemonSet(ctx, kc, stdout)
	}
	o.registries = fs.Args()
	if err := o.parse(rawURL, caFile); err != nil {
		return usageError{msg: "nodeconfig: " + err.Error()}
	}
	if o.remove {
		for _, r := range o.registries {
			if err := removeHostsDir(o.dir, r); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "removed %s\n", filepath.Join(o.dir, r, "hosts.toml"))
		}
		return nil
	}
	if err := o.writeAll(stdout); err != nil {
		return err
	}
	if !o.wait {
		return nil
	}
	return o.waitLoop(ctx, stdout, stderr)
}

// parse checks the command line: every problem is a usage error that names the flag or argument.
func (o *nodeconfigOptions) parse(rawURL, caFile string) error {
	if o.dir == "" {
		return errors.New("--dir is required")
	}
	if len(o.registries) == 0 {
		return errors.New("name at least one REGISTRY (docker.io, ghcr.io, ..., or _default)")
	}
	seen := map[string]bool{}
	for _, r := range o.registries {
		if err := checkRegistryName(r); err != nil {
			return err
		}
		if seen[r] {
			return fmt.Errorf("registry %q named twice", r)
		}
		seen[r] = true
	}
	if o.owner != "" {
		if ns, name, ok := strings.Cut(o.owner, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("--owner %q: want NAMESPACE/NAME", o.owner)
		}
	}
	if o.interval <= 0 {
		return fmt.Errorf("--interval %s: must be positive", o.interval)
	}
	if o.remove {
		return nil
	}
	u, err := parsePortcullisURL(rawURL)
	if err != nil {
		return err
	}
	o.portcullis = u
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		if err := checkPEMCerts(b); err != nil {
			return fmt.Errorf("--ca %s: %w", caFile, err)
		}
		o.ca = b
	}
	return nil
}

// parsePortcullisURL accepts http(s)://host[:port] with no path, query or credentials: what containerd can use
// as a [host] and a server.
func parsePortcullisURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("--portcullis is required (e.g. https://10.96.0.50:5000)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--portcullis %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" ||
		u.Fragment != "" || strings.Trim(u.Path, "/") != "" || strings.ContainsAny(raw, "\"\\\n ") {
		return nil, fmt.Errorf("--portcullis %q: want http://HOST[:PORT] or https://HOST[:PORT]", raw)
	}
	u.Path = ""
	return u, nil
}

// checkRegistryName accepts a registry host (name or IP, optional port) or _default, and nothing that could
// leave DIR or break the TOML it is written into.
func checkRegistryName(r string) error {
	if r == "_default" {
		return nil
	}
	bad := fmt.Errorf("registry %q: want a host such as docker.io or registry.example.com:5000, or _default", r)
	if r == "" || len(r) > 253 || strings.ContainsAny(r, "/\\\"' \t\n") || strings.HasPrefix(r, ".") || strings.HasPrefix(r, "-") {
		return bad
	}
	host := r
	if h, port, err := net.SplitHostPort(r); err == nil {
		if port == "" || strings.Trim(port, "0123456789") != "" {
			return bad
		}
		host = h
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || strings.Trim(strings.ToLower(label), "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return bad
		}
	}
	return nil
}

// checkPEMCerts says whether b holds at least one PEM certificate and nothing else that is not one.
func checkPEMCerts(b []byte) error {
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			if len(bytes.TrimSpace(rest)) > 0 && n == 0 {
				return errors.New("not a PEM file")
			}
			break
		}
		if blk.Type != "CERTIFICATE" {
			return fmt.Errorf("holds a %s block; want only CERTIFICATE blocks", blk.Type)
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate in it")
	}
	return nil
}

// writeAll writes every registry's directory.
func (o *nodeconfigOptions) writeAll(stdout io.Writer) error {
	for _, r := range o.registries {
		changed, err := writeHostsDir(o.dir, r, o.portcullis, o.ca)
		if err != nil {
			return err
		}
		if changed {
			fmt.Fprintf(stdout, "wrote %s -> %s\n", filepath.Join(o.dir, r, "hosts.toml"), o.portcullis)
		}
	}
	return nil
}

// nodeHostsTOML renders the enforcing layout for registry: Portcullis is the one [host] and also the server.
// containerd tries each [host] and then server, and moves on after any error but 404 (a 403 included), so a
// server that is the registry itself would serve what Portcullis denied. containerd 1.6 also refuses a file
// without a [host] table and then pulls from the registry itself, so the table is always there. Neither entry
// can push, which is what makes containerd send ?ns=<registry> (how Portcullis picks the upstream).
func nodeHostsTOML(registry string, portcullis *url.URL, withCA bool) string {
	var b strings.Builder
	who := "pulls of " + registry
	if registry == "_default" {
		who = "pulls of every registry without a directory of its own"
	}
	fmt.Fprintf(&b, "%s for %s: do not edit, it is rewritten.\n", nodeconfigMarker, who)
	b.WriteString("# Portcullis is both the host and the server, so a denial (403) is never retried at the registry itself.\n")
	fmt.Fprintf(&b, "server = %q\n", portcullis.String())
	b.WriteString("capabilities = [\"pull\", \"resolve\"]\n")
	if withCA {
		fmt.Fprintf(&b, "ca = %q\n", nodeconfigCAFile)
	}
	fmt.Fprintf(&b, "\n[host.%q]\n", portcullis.String())
	b.WriteString("  capabilities = [\"pull\", \"resolve\"]\n")
	if withCA {
		fmt.Fprintf(&b, "  ca = %q\n", nodeconfigCAFile)
	}
	return b.String()
}

// writeHostsDir writes DIR/<registry>/hosts.toml (and the CA first, so the file never names a CA that is not
// there) and reports whether anything changed. Each file is replaced by rename, so containerd, which reads
// hosts.toml on every pull, never sees half a file: a half file would fail to parse, and containerd would then
// pull from the registry itself.
func writeHostsDir(dir, registry string, portcullis *url.URL, ca []byte) (bool, error) {
	hostDir := filepath.Join(dir, registry)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		return false, fmt.Errorf("nodeconfig: %w", err)
	}
	changed := false
	caPath := filepath.Join(hostDir, nodeconfigCAFile)
	if ca != nil {
		c, err := replaceFile(caPath, ca)
		if err != nil {
			return false, err
		}
		changed = changed || c
	} else if err := os.Remove(caPath); err == nil {
		changed = true
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("nodeconfig: %w", err)
	}
	hostsPath := filepath.Join(hostDir, "hosts.toml")
	old, err := os.ReadFile(hostsPath)
	switch {
	case err == nil && !bytes.HasPrefix(old, []byte(nodeconfigMarker)):
		// Someone else's file: keep it for removal to put back, once (a later foreign edit is not a backup).
		if _, err := os.Stat(hostsPath + nodeconfigBackupSuffix); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(hostsPath+nodeconfigBackupSuffix, old, 0o644); err != nil {
				return false, fmt.Errorf("nodeconfig: %w", err)
			}
		}
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return false, fmt.Errorf("nodeconfig: %w", err)
	}
	c, err := replaceFile(hostsPath, []byte(nodeHostsTOML(registry, portcullis, ca != nil)))
	if err != nil {
		return false, err
	}
	return changed || c, nil
}

// replaceFile writes b to path through a temporary file and a rename, unless path already holds exactly b.
func replaceFile(path string, b []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return false, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".portcullis-*")
	if err != nil {
		return false, fmt.Errorf("nodeconfig: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return false, fmt.Errorf("nodeconfig: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return false, fmt.Errorf("nodeconfig: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return false, fmt.Errorf("nodeconfig: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("nodeconfig: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("nodeconfig: %w", err)
	}
	return true, nil
}

// removeHostsDir undoes writeHostsDir: it removes a hosts.toml nodeconfig wrote (one it did not write stays),
// puts back the file it had replaced, removes its CA copy, and the directory if nothing else is left in it.
func removeHostsDir(dir, registry string) error {
	hostDir := filepath.Join(dir, registry)
	hostsPath := filepath.Join(hostDir, "hosts.toml")
	b, err := os.ReadFile(hostsPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("nodeconfig: %w", err)
	case !bytes.HasPrefix(b, []byte(nodeconfigMarker)):
		return nil // not ours: leave the directory as it is
	default:
		if backup, err := os.ReadFile(hostsPath + nodeconfigBackupSuffix); err == nil {
			if _, err := replaceFile(hostsPath, backup); err != nil {
				return err
			}
			if err := os.Remove(hostsPath + nodeconfigBackupSuffix); err != nil {
				return fmt.Errorf("nodeconfig: %w", err)
			}
		} else if err := os.Remove(hostsPath); err != nil {
			return fmt.Errorf("nodeconfig: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(hostDir, nodeconfigCAFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("nodeconfig: %w", err)
	}
	if entries, err := os.ReadDir(hostDir); err == nil && len(entries) == 0 {
		_ = os.Remove(hostDir)
	}
	return nil
}
