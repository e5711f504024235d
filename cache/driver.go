package cache

import (
	"context"
	"fmt"
	"path/filepath"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"

	// The drivers register themselves with distribution's factory in init. That registry is
	// distribution's, not ours: a blank import is the only way to make a driver available by name, so the
	// side effects are confined to this one file, next to the only function that looks drivers up.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
)

// NewDriver creates a CNCF Distribution storage driver by name ("filesystem", "inmemory", "s3") with
// the parameters distribution documents for it (filesystem: rootdirectory; s3: region, bucket, ...).
func NewDriver(name string, params map[string]any) (storagedriver.StorageDriver, error) {
	if name == "s3" { // what people call it; Distribution registers it as s3aws
		name = "s3aws"
	}
	d, err := factory.Create(context.Background(), name, params)
	if err != nil {
		return nil, fmt.Errorf("cache: storage driver %q: %w", name, err)
	}
	if name == "filesystem" {
		root := "/var/lib/registry" // the driver's default
		if r, ok := params["rootdirectory"]; ok {
			root = fmt.Sprint(r)
		}
		return localDriver{StorageDriver: d, root: filepath.Clean(root)}, nil
	}
	return d, nil
}

// localDriver is the filesystem driver, with the directory it stores in: a Content on it writes small objects
// with plain file operations (see smallObject).
type localDriver struct {
	storagedriver.StorageDriver
	root string
}
