extension Store {
    /// Every statement the store runs (for the PREPARE test).
    public static let allQueries: [StoreQuery] = [
        StoreQuery(name: "server.health", sql: ServerSQL.health),
        StoreQuery(name: "server.registerReplica", sql: ServerSQL.registerReplica),
        StoreQuery(name: "jobs.enqueue", sql: JobSQL.enqueue),
        StoreQuery(name: "jobs.byUniqueKeys", sql: JobSQL.byUniqueKeys),
        StoreQuery(name: "jobs.lease", sql: JobSQL.lease),
        StoreQuery(name: "jobs.heartbeat", sql: JobSQL.heartbeat),
        StoreQuery(name: "jobs.leaseCheck", sql: JobSQL.leaseCheck),
        StoreQuery(name: "jobs.complete", sql: JobSQL.complete),
        StoreQuery(name: "jobs.fail", sql: JobSQL.fail),
        StoreQuery(name: "jobs.releaseExpired", sql: JobSQL.releaseExpired),
        StoreQuery(name: "jobs.releaseLost", sql: JobSQL.releaseLost),
        StoreQuery(name: "jobs.cancel", sql: JobSQL.cancel),
        StoreQuery(name: "jobs.retry", sql: JobSQL.retry),
        StoreQuery(name: "jobs.stateOf", sql: JobSQL.stateOf),
        StoreQuery(name: "jobs.get", sql: JobSQL.get),
        StoreQuery(name: "jobs.list", sql: JobSQL.list),
        StoreQuery(name: "jobs.prune", sql: JobSQL.prune),
        StoreQuery(name: "queues.list", sql: QueueSQL.list),
        StoreQuery(name: "queues.stats", sql: QueueSQL.stats),
        StoreQuery(name: "queues.setPaused", sql: QueueSQL.setPaused),
    ]
}
