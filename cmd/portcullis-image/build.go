package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's user: not root, the uid and gid distroless images use (the chart's securityContext names it).
const (
	uid      = 65532
	userName = "nonroot"
	// binaryPath is where the binary goes; the image's entrypoint.
	binaryPath = "/usr/local/bin/portcullis"
	// dataDir is owned by the user, for `serve` without a volume (the chart mounts one there).
	dataDir = "/var/lib/portcullis"
)

// buildOptions describe one image.
type buildOptions struct {
	binary   string // a static Linux executable
	caBundle string // PEM bundle installed as /etc/ssl/certs/ca-certificates.crt; "" = none
	arch     string // GOARCH of the binary, e.g. amd64
	version  string // org.opencontainers.image.version
	source   string // org.opencontainers.image.source
	revision string // org.opencontainers.image.revision; "" = omitted
	created  time.Time
}

// elfMachines maps GOARCH to the ELF machine a binary for it has.
var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM, "386": elf.EM_386,
	"ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV,
}

// checkStatic refuses a binary that is not a static Linux executable for arch: in an image with nothing else in
// it, a dynamic one would not start.
func checkStatic(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not a Linux executable: %w", path, err)
	}
	defer f.Close()
	if want, ok := elfMachines[arch]; !ok || f.Machine != want {
		return fmt.Errorf("%s: built for %s, not %s", path, f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// buildImage assembles the image on an empty base, with no container engine: one layer holding the binary, a
// passwd and group naming the user, the CA bundle, a writable /tmp and the data directory; a config that runs
// the binary as that user; OCI media types and labels.
func buildImage(o buildOptions) (v1.Image, error) {
	if err := checkStatic(o.binary, o.arch); err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return nil, err
	}
	var ca []byte
	if o.caBundle != "" {
		if ca, err = os.ReadFile(o.caBundle); err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
			return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", o.caBundle)
		}
	}
	layerTar, err := rootfs(bin, ca, o.created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: o.created}, CreatedBy: "portcullis-image: static binary, passwd, CA bundle", Comment: "portcullis " + o.version,
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.arch
	cf.Created = v1.Time{Time: o.created}
	labels := map[string]string{
		"org.opencontainers.image.title":       "portcullis",
		"org.opencontainers.image.description": "OCI registry pull-through proxy that serves only images it can trust",
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.source":      o.source,
		"org.opencontainers.image.created":     o.created.UTC().Format(time.RFC3339),
	}
	if o.revision != "" {
		labels["org.opencontainers.image.revision"] = o.revision
	}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", uid, uid),
		Entrypoint: []string{binaryPath},
		// Without arguments: the quick start on every interface (a real install passes --config).
		Cmd:          []string{"serve", "--listen", "0.0.0.0:5000", "--ops-listen", "0.0.0.0:5001", "--data-dir", dataDir},
		Env:          []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		WorkingDir:   dataDir,
		Labels:       labels,
		ExposedPorts: map[string]struct{}{"5000/tcp": {}, "5001/tcp": {}, "5002/tcp": {}},
		StopSignal:   "SIGTERM",
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, map[string]string{
		"org.opencontainers.image.version": o.version,
		"org.opencontainers.image.source":  o.source,
	}).(v1.Image), nil
}

// entry is one file or directory of the root file system.
type entry struct {
	name string
	mode int64
	uid  int
	dir  bool
	body []byte
}

// rootfs is the layer's tar: deterministic (sorted, fixed times), so the same inputs give the same digest.
func rootfs(bin, ca []byte, mtime time.Time) ([]byte, error) {
	entries := []entry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, body: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:/home/%s:/sbin/nologin\n", userName, uid, uid, userName, userName))},
		{name: "etc/group", mode: 0o644, body: []byte(fmt.Sprintf("root:x:0:\n%s:x:%d:\n", userName, uid))},
		{name: "etc/nsswitch.conf", mode: 0o644, body: []byte("hosts: files dns\n")},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/" + userName + "/", mode: 0o700, uid: uid, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: "usr/", mode: 0o755, dir: true},
		{name: "usr/local/", mode: 0o755, dir: true},
		{name: "usr/local/bin/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(binaryPath, "/"), mode: 0o755, body: bin},
		{name: "var/", mode: 0o755, dir: true},
		{name: "var/lib/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(dataDir, "/") + "/", mode: 0o750, uid: uid, dir: true},
	}
	if ca != nil {
		entries = append(entries,
			entry{name: "etc/ssl/", mode: 0o755, dir: true},
			entry{name: "etc/ssl/certs/", mode: 0o755, dir: true},
			entry{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: ca})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: mtime, Format: tar.FormatPAX}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeArchive writes img as an OCI image layout in a tar archive at out, named name (for example
// portcullis:dev): what `ctr images import` reads (containerd takes the name from io.containerd.image.name).
func writeArchive(img v1.Image, name, out string) error {
	tag := name
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		tag = name[i+1:]
	}
	dir, err := os.MkdirTemp(filepath.Dir(out), ".oci-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          name,
		"org.opencontainers.image.ref.name": tag,
	})); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".portcullis-image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tarDir(tmp, dir); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// tarDir writes the files under dir, sorted, to w.
func tarDir(w io.Writer, dir string) error {
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			names = append(names, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, path := range names {
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if st.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		h.Typeflag, h.Size = tar.TypeReg, st.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		_ = f.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}
