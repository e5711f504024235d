package integration

import (
	"testing"

	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/internal/fleetsim"
)

// TestFleetRolloutAsksUpstreamOnce: 100 nodes roll out 5 new images through 3 replicas sharing Redis and one
// content store. The fleet is one logical proxy: each tag and each digest reaches the upstream once, and each
// digest is verified once, however many replicas are asked at the same moment (fleet-wide leases). The
// performance harness runs the same at 1,000 nodes and 50 images.
func TestFleetRolloutAsksUpstreamOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("500 pulls through 3 replicas")
	}
	r := fleetsim.Run(t, fleetsim.Options{Nodes: 100, Images: 5, Replicas: 3, Parallel: 64, RedisAddr: cachetest.StartRedis(t)})
	t.Log(r)
	if r.MaxPerTag != 1 || r.MaxPerManifest != 1 || r.MaxPerBlob != 1 {
		t.Errorf("upstream requests: at most %d per tag, %d per manifest digest, %d per blob; want 1 each", r.MaxPerTag, r.MaxPerManifest, r.MaxPerBlob)
	}
	if r.MaxVerifications != 1 || r.Verifications != r.Images {
		t.Errorf("verifications: %d in all, at most %d per digest; want %d, 1 each", r.Verifications, r.MaxVerifications, r.Images)
	}
}
