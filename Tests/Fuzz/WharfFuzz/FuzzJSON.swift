import WharfRPC

enum FuzzJSON {
    static func one(_ data: UnsafeRawBufferPointer) {
        guard let value = try? JSONParser.parse(data) else { return }
        _ = value.pathOfNUL()
        _ = value.pathOfInexactNumber()
        let written = value.encoded
        let again: JSON
        do {
            again = try JSONParser.parse(written)
        } catch {
            preconditionFailure("the writer's output does not parse (\(error)): \(String(decoding: written, as: UTF8.self))")
        }
        // Inexact numbers are written as null, so what comes back has none, and is a fixed point.
        precondition(again.pathOfInexactNumber() == nil, "an inexact number survived writing")
        let rewritten = again.encoded
        precondition(rewritten == written, "writing is not stable: \(written.count) vs \(rewritten.count) bytes")
        if case .object(let o) = value {
            // Every key is found, with the value at its place (the index agrees with the pairs). A value
            // holding an inexact number (NaN) anywhere inside is not equal to itself, so only its
            // presence is checked.
            for p in o.pairs.prefix(1000) {
                guard let found = o[p.key] else { preconditionFailure("key \(p.key) not found") }
                precondition(found == p.value || p.value.pathOfInexactNumber() != nil)
            }
        }
    }
}
