// The no-op job: does nothing and succeeds (graphile-worker's perfTest runs log_if_999,
// which only compares its payload's id).
module.exports = async () => {};
