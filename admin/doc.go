// Package admin is the operators' HTTP API: its own listener, bearer-token protected, never the registry port.
//
// It owns the admin routes under /admin/v1/, their authentication and their error bodies (the registry's
// {"errors":[{"code","message"}]} shape), and the audit records of every change made through them. What it
// changes and shows lives in admission (posted reports and VEX, the lists, explain, cached decisions, the policy
// file and its previews), reached through small interfaces; image references are resolved by a Resolver the
// binary builds on its upstream clients.
//
// It must never serve the registry API, never accept a request without a valid token, and never store a report
// or VEX that does not name the image it is posted for.
package admin
