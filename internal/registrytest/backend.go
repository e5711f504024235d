package registrytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log"
	"net/http"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // registers the "filesystem" driver
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"   // registers the "inmemory" driver
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/sirupsen/logrus"
)

// Distribution returns CNCF Distribution's registry application on a fresh
// in-memory storage driver (or the filesystem driver in dir when dir is not
// empty), and the function that shuts it down. New serves it; a benchmark
// serves it in a process of its own, over the directory a Registry wrote.
func Distribution(ctx context.Context, dir string) (http.Handler, func()) {
	silenceLogrus()
	driver := configuration.Storage{"inmemory": configuration.Parameters{}}
	if dir != "" {
		driver = configuration.Storage{"filesystem": configuration.Parameters{"rootdirectory": dir}}
	}
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			// Tests move tags and delete manifests.
			"delete": configuration.Parameters{"enabled": true},
			// No background purger goroutine.
			"maintenance": configuration.Parameters{
				"uploadpurging": map[any]any{"enabled": false},
			},
			// The inmemory driver cannot redirect anyway; say so explicitly.
			"redirect": configuration.Parameters{"disable": true},
		},
	}
	for k, v := range driver {
		cfg.Storage[k] = v
	}
	// A fixed secret avoids the "generated random secret" warning.
	cfg.HTTP.Secret = randomHex(32)
	app := handlers.NewApp(ctx, cfg)
	return app, func() { _ = app.Shutdown() }
}

// newGGCR returns go-containerregistry's in-memory registry with the
// referrers API on and its request log discarded.
func newGGCR() http.Handler {
	return ggcrregistry.New(
		ggcrregistry.WithReferrersSupport(true),
		ggcrregistry.Logger(log.New(io.Discard, "", 0)),
	)
}

// silenceLogrus mutes Distribution's request and warning logs. Distribution
// logs through logrus' process-wide standard logger and offers no per-App
// logger (its context key is internal), so this changes process state; it is
// idempotent and only ever done in test binaries.
func silenceLogrus() {
	l := logrus.StandardLogger()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.PanicLevel)
}

// randomHex returns n random bytes, hex encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("registrytest: crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}
