// Package executor owns the built-in executors: fs.read, fs.write,
// repo.apply_patch, process.exec, net.http_request and secrets.checkout.
//
// An Executor runs an action only after policy allowed it, and confines it
// again on its own: paths stay under the workspace root even if the
// filesystem changes underneath, commands run without a shell or inherited
// environment, HTTP requests reach only obligated hosts at public addresses
// checked at dial time, and secrets leave the broker only as lease ids. Every
// output is redacted and then capped before it is returned. See
// docs/executors.md for exactly what each executor guarantees.
package executor
