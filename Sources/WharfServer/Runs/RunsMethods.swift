import WharfRPC
import WharfStore

extension RunsService {
    static let runStates = ["running", "completed", "failed", "cancelled"]

    func register(in methods: MethodTable) {
        methods.register("runs.get") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try Self.runID(call.params)
            store.run(id: id) { r in call.finish(r.mapError(\.rpcError).flatMap { RunReplies.get(id, $0) }) }
        }

        methods.register("runs.list") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["state", "limit", "cursor"])
            let state = try p.optionalString("state")
            if let state, !Self.runStates.contains(state) {
                throw RPCError.invalidParams(field: "state", "must be one of \(Self.runStates.joined(separator: ", "))")
            }
            let limit = Int(try p.optionalInt("limit", in: 1...1000) ?? 50)
            var before: Int64?
            if let cursor = try p.optionalString("cursor") {
                guard let c = Int64(cursor), c > 0 else {
                    throw RPCError.invalidParams(field: "cursor", "is not a cursor from runs.list")
                }
                before = c
            }
            store.listRuns(state: state, beforeID: before, limit: limit) { r in
                call.finish(r.mapError(\.rpcError).map { RunReplies.page($0, limit: limit) })
            }
        }

        methods.register("runs.cancel") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try Self.runID(call.params)
            store.cancelRun(id: id, retention: jobs.retention) { r in
                call.finish(r.mapError(\.rpcError).flatMap { RunReplies.cancel(id, $0) })
            }
        }

        methods.register("batches.get") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let text = try call.params.string("id")
            guard let id = Int64(text), id > 0 else { throw RPCError.invalidParams(field: "id", "is not a batch id") }
            store.batch(id: id) { r in call.finish(r.mapError(\.rpcError).flatMap { RunReplies.batch(id, $0) }) }
        }
    }

    static func runID(_ p: Params) throws(RPCError) -> Int64 {
        let text = try p.string("id")
        guard let id = Int64(text), id > 0 else { throw RPCError.invalidParams(field: "id", "is not a run id") }
        return id
    }
}
