extension Store {
    /// Every statement the store runs (for the PREPARE test).
    public static let allQueries: [StoreQuery] = [
        StoreQuery(name: "server.health", sql: ServerSQL.health),
        StoreQuery(name: "server.registerReplica", sql: ServerSQL.registerReplica),
    ]
}
