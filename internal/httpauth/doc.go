// Package httpauth reads the credentials a request carries: one parser of the Authorization header for the
// registry listener (a scanner's credential) and the admin listener (an admin token), so the two cannot read the
// same header differently. It checks nothing against a secret.
package httpauth
