package cache

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The embedded state files are JSON Lines, one record a line, so an operator can read them with jq and grep:
//
//	{"r":<the record, as it is>}      a record that is compact single-line JSON (audit records usually are)
//	{"b":"<base64 of the record>"}    any other record
//
// Collection files add the record's id: {"id":"<id>","r":...}. Reading gives back the record's exact bytes either
// way.

// fileLine is one line of an embedded state file.
type fileLine struct {
	ID string          `json:"id,omitempty"`
	R  json.RawMessage `json:"r,omitempty"`
	B  []byte          `json:"b,omitempty"`
}

// encodeLine appends the line for (id, rec), newline included. id "" leaves the id out.
func encodeLine(dst []byte, id string, rec []byte) []byte {
	dst = append(dst, '{')
	if id != "" {
		idJSON, _ := json.Marshal(id) // a string always marshals
		dst = append(dst, `"id":`...)
		dst = append(dst, idJSON...)
		dst = append(dst, ',')
	}
	if rawJSONOK(rec) {
		dst = append(dst, `"r":`...)
		dst = append(dst, rec...)
	} else {
		dst = append(dst, `"b":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, rec)
		dst = append(dst, '"')
	}
	return append(dst, '}', '\n')
}

// rawJSONOK reports whether rec can be embedded as it is: valid JSON that a JSON decoder hands back byte for byte
// (no whitespace around or between tokens, so no newline either).
func rawJSONOK(rec []byte) bool {
	if len(rec) == 0 || !json.Valid(rec) {
		return false
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, rec); err != nil {
		return false
	}
	return bytes.Equal(buf.Bytes(), rec)
}

// decodeLine parses one line (without its newline) and returns the id and the record's bytes.
func decodeLine(line []byte) (id string, rec []byte, err error) {
	var l fileLine
	if err := json.Unmarshal(line, &l); err != nil {
		return "", nil, err
	}
	switch {
	case l.R != nil && l.B != nil:
		return "", nil, errors.New(`both "r" and "b"`)
	case l.R != nil:
		return l.ID, []byte(l.R), nil
	case l.B != nil:
		return l.ID, l.B, nil
	}
	return "", nil, errors.New(`neither "r" nor "b"`)
}

// writeFileAtomic replaces dir/name with data so that a crash at any moment leaves either the old file or the new
// one: write a temporary file in the same directory, fsync it, rename it over the old one, fsync the directory.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, tmpPrefix+name+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// tmpPrefix starts the names of files being written; a crash can leave them behind and opening removes them.
const tmpPrefix = ".tmp-"

// removeTemps removes what writeFileAtomic left behind in dir when a crash interrupted it.
func removeTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncDir makes a directory's entries (a created, renamed or removed file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// mkdirDurable creates dir (and parents) and makes its entry durable in its parent.
func mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}
