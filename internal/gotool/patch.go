package gotool

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// patchDir and patchedDir are the nested module's patches (in the repository) and its patched copies (generated,
// ignored by git).
const (
	patchDir   = "_patch"
	patchedDir = ".patched"
)

// patched prepares the patched dependencies of the module at moddir and returns the -modfile to build with, or ""
// when it patches nothing.
func patched(ctx context.Context, moddir string) (string, error) {
	root := filepath.Join(moddir, patchDir)
	mods, err := patchedModules(root)
	if err != nil || len(mods) == 0 {
		return "", err
	}
	// The patches' hash names the copies (a change of go.mod alone reuses them, and their build); with go.mod's,
	// the -modfile.
	h := sha256.New()
	gomod, err := os.ReadFile(filepath.Join(moddir, "go.mod"))
	if err != nil {
		return "", err
	}
	for _, m := range mods {
		for _, f := range m.files {
			b, err := os.ReadFile(filepath.Join(root, m.modVer, f))
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%s %s %d\n", m.modVer, f, len(b))
			h.Write(b)
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	h.Write(gomod)
	modSum := hex.EncodeToString(h.Sum(nil))[:16]
	out := filepath.Join(moddir, patchedDir)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	var replaces bytes.Buffer
	for _, m := range mods {
		dst := filepath.Join(out, m.modVer+"-"+sum)
		if err := copyPatched(ctx, moddir, root, m, dst); err != nil {
			return "", fmt.Errorf("%s: %w", m.modVer, err)
		}
		fmt.Fprintf(&replaces, "replace %s %s => %s\n", m.path, m.version, dst)
	}
	modfile := filepath.Join(out, "go-"+modSum+".mod")
	if err := writeAtomic(modfile, append(append(gomod, '\n'), replaces.Bytes()...)); err != nil {
		return "", err
	}
	gosum, err := os.ReadFile(filepath.Join(moddir, "go.sum"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := writeAtomic(strings.TrimSuffix(modfile, ".mod")+".sum", gosum); err != nil {
		return "", err
	}
	return modfile, nil
}

// patchedModule is one module version with patched files.
type patchedModule struct {
	modVer, path, version string   // "example.com/m@v1.2.3", its path and version
	files                 []string // the patched files, slash-separated, relative to the module root
}

// patchedModules lists the patches under root: each directory whose name has an "@" is a module version, the
// path leading to it its module path, and the files under it replace the module's.
func patchedModules(root string) ([]patchedModule, error) {
	var mods []patchedModule
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return fs.SkipAll
		}
		if err != nil || !d.IsDir() || !strings.Contains(d.Name(), "@") {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		modVer := filepath.ToSlash(rel)
		path, version, _ := strings.Cut(modVer, "@")
		m := patchedModule{modVer: modVer, path: path, version: version}
		err = filepath.WalkDir(p, func(f string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			r, err := filepath.Rel(p, f)
			m.files = append(m.files, filepath.ToSlash(r))
			return err
		})
		if err != nil {
			return err
		}
		slices.Sort(m.files)
		mods = append(mods, m)
		return fs.SkipDir
	})
	return mods, err
}

// copyPatched writes, unless it is there, dst: m's Go sources from the module cache (downloaded if need be) with
// the patched files in their place. It is made beside dst and renamed, so a concurrent build sees all or nothing.
func copyPatched(ctx context.Context, moddir, root string, m patchedModule, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	out, err := run(ctx, moddir, "mod", "download", "-json", m.modVer)
	if err != nil {
		return err
	}
	var dl struct{ Dir, Error string }
	if err := json.Unmarshal([]byte(out), &dl); err != nil {
		return fmt.Errorf("go mod download: %w", err)
	}
	if dl.Error != "" || dl.Dir == "" {
		return fmt.Errorf("go mod download: %q", dl.Error)
	}
	tmp := dst + ".tmp-" + rand.Text()
	defer os.RemoveAll(tmp)
	err = filepath.WalkDir(dl.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dl.Dir, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); rel != "." && (n == "vendor" || n == "testdata" || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_")) {
				return fs.SkipDir
			}
			return os.MkdirAll(filepath.Join(tmp, rel), 0o755)
		}
		if !isSource(d.Name()) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(tmp, rel), b, 0o644)
	})
	if err != nil {
		return err
	}
	for _, f := range m.files {
		if _, err := os.Stat(filepath.Join(tmp, filepath.FromSlash(f))); err != nil {
			return fmt.Errorf("patch %s replaces no file of the module: %w", f, err)
		}
		b, err := os.ReadFile(filepath.Join(root, m.modVer, filepath.FromSlash(f)))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, filepath.FromSlash(f)), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		if _, statErr := os.Stat(dst); statErr == nil {
			return nil // another build made it first
		}
		return err
	}
	return nil
}

// isSource reports whether a module file is needed to build it: Go sources but tests, assembly, C, go.mod.
func isSource(name string) bool {
	if strings.HasSuffix(name, "_test.go") {
		return false
	}
	switch filepath.Ext(name) {
	case ".go", ".s", ".c", ".h":
		return true
	}
	return name == "go.mod"
}

// writeAtomic writes data to name through a temporary file and a rename.
func writeAtomic(name string, data []byte) error {
	tmp := name + ".tmp-" + rand.Text()
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
