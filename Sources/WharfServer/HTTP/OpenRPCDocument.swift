import WharfRPC

/// `Protocol/openrpc.json`, built into the binary: served at `GET /openrpc.json` and by `rpc.discover`.
enum OpenRPCDocument {
    /// The document's bytes as in the repository.
    static var bytes: [UInt8] { PackageResources.openrpc_json }

    /// The document as a JSON value (parsed once per use; `rpc.discover` is rare).
    static func value() throws -> JSON {
        do {
            return try JSONParser.parse(bytes)
        } catch {
            preconditionFailure("Protocol/openrpc.json built into the binary is not JSON: \(error)")
        }
    }

    /// Registers `rpc.discover`, the OpenRPC convention's self-description, on every transport.
    static func register(in methods: MethodTable) {
        methods.register("rpc.discover", open: true) { call in
            try call.params.onlyKnown([])
            call.reply(try value())
        }
    }
}
