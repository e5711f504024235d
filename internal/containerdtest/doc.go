// Package containerdtest runs a private containerd daemon for tests and drives it with the real `ctr`
// client, so integration tests can pull images through Portcullis exactly as a node does: with a
// hosts.toml mirror, which makes containerd add `?ns=<upstream host>` to every registry request.
//
// It owns the daemon's life (a temporary root, state and socket; stopped and removed in t.Cleanup)
// and the hosts.toml it writes. It must never touch the system containerd (/run/containerd, /etc/containerd),
// never reach the network beyond the mirror URL it is given, and never leave a process behind.
//
// Start skips the test when containerd or ctr is missing or the test does not run as root, unless
// PORTCULLIS_REQUIRE_CONTAINERD=1, in which case it fails instead. Install the binaries with
// scripts/install-test-deps.sh (Debian package `containerd`).
//
// Findings this package relies on (checked with containerd 1.6.20, Debian bookworm):
//   - `ctr images pull` resolves and fetches in the ctr process itself, reading --hosts-dir there; the daemon
//     only stores content and unpacks. A host URL with the http scheme is used as plain HTTP without
//     --plain-http.
//   - containerd adds `ns=<upstream host>` to every request sent to a host without the push capability
//     (HEAD and GET of manifests, GET of blobs); it sends no `/v2/` ping to a mirror.
//   - After a mirror fails with anything but 404, containerd tries the next host, by default the upstream
//     itself. WriteHostsDir therefore gives the upstream server only the push capability, so pulls never
//     leave the mirror.
//   - A 403 on the manifest HEAD (resolve) shows only the status:
//     `pulling from host 127.0.0.1:PORT failed with status code [manifests v1]: 403 Forbidden`;
//     the registry's message is not read. Response headers appear only with `ctr --debug`, as
//     `response.header.warning="..."`. A 403 on a GET (manifest by digest, or blob) shows the OCI error
//     body: `... 403 Forbidden - Server message: denied: <message>`.
package containerdtest
