// Package configs owns the Portcullis configuration: its schema (Config), defaults (Default),
// strict loading (Load, Parse), environment overrides for secrets (ApplyEnv), and checks
// (Validate for meaning, CheckFiles for the files it names). It also ships the example files
// users start from: quickstart.yaml and production.yaml, plus client-side mirror settings for
// containerd (containerd/hosts.toml, containerd/_default-hosts.toml), Docker
// (docker/daemon.json) and CRI-O (crio/registries.conf).
//
// Loading is strict, after Caddy: an unknown field, a duplicate key or a value of the wrong
// type is an error that names the file, the line and the field path, for example
//
//	portcullis.yaml:7: unknown field "timout" in upstreams[0] (did you mean "timeout"?)
//	portcullis.yaml:9: upstreams[0].timeout: invalid duration "3o s" (want e.g. 30s, 5m, 24h, 7d)
//
// Durations are strings ("30s", "7d") and sizes carry units ("4MiB", "10GiB"). A field left
// out of the file, or set to null, keeps its default; a field set to its zero value (false, 0,
// "") is that value, so "staleIfError: false" and "opsListen: \"\"" mean what they say.
//
// Validate does no I/O, so example files whose certificates live elsewhere (production.yaml)
// can be checked with Parse and Validate alone; Load also runs CheckFiles.
//
// This package must never start anything or dial anything, and it reads the environment only
// in Load (and ApplyEnv given nil); it holds plain data and the rules for reading it.
package configs
