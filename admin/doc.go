// Package admin is the operators' HTTP API: its own listener, protected by named bearer tokens (each with a role,
// kept only as hashes) or verified TLS client certificates, never the registry port.
//
// It owns the admin routes under /admin/v1/, their authentication (auth.go: tokens, client certificates, the
// per-address limit on refused credentials) and their error bodies (the registry's {"errors":[{"code","message"}]}
// shape), and the audit records of every change made through them, with the principal's name as the actor. What
// it changes and shows lives in admission (posted reports and VEX, the allow and deny lists, the audit log,
// explain, cached decisions, the policy file and its previews), reached through small interfaces; image
// references are resolved by a Resolver the binary builds on its upstream clients. docs/admin-api.openapi.yaml
// describes every route; a test holds it to Routes.
//
// It must never serve the registry API, never accept a request without a valid credential, never let a read
// principal change anything, and never store a report or VEX that does not name the image it is posted for.
package admin
