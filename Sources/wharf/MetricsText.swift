/// One sample of the Prometheus text format: `name{label="value",...} number`.
struct MetricSample: Equatable {
    var name: String
    var labels: [String: String]
    var value: Double
}

/// Reads the Prometheus text format (0.0.4) that `GET /metrics` serves: comments are skipped, label
/// values unescaped (`\\`, `\"`, `\n`). Lines it cannot read are skipped rather than fatal: a view of
/// the server should not stop at a metric it does not know.
enum MetricsText {
    static func parse(_ text: String) -> [MetricSample] {
        text.split(separator: "\n").compactMap { line in
            line.hasPrefix("#") ? nil : sample(Substring(line))
        }
    }

    static func sample(_ line: Substring) -> MetricSample? {
        var labels: [String: String] = [:]
        var rest: Substring
        let name: Substring
        if let brace = line.firstIndex(of: "{") {
            name = line[..<brace]
            var i = line.index(after: brace)
            while i < line.endIndex, line[i] != "}" {
                guard let eq = line[i...].firstIndex(of: "="), line.index(after: eq) < line.endIndex,
                    line[line.index(after: eq)] == "\""
                else { return nil }
                let key = String(line[i..<eq]).trimmingCharacters(in: [" ", ","])
                var j = line.index(eq, offsetBy: 2)
                var value = ""
                while j < line.endIndex, line[j] != "\"" {
                    if line[j] == "\\", line.index(after: j) < line.endIndex {
                        j = line.index(after: j)
                        value.append(line[j] == "n" ? "\n" : line[j])
                    } else {
                        value.append(line[j])
                    }
                    j = line.index(after: j)
                }
                guard j < line.endIndex else { return nil }
                labels[key] = value
                i = line.index(after: j)
                while i < line.endIndex, line[i] == "," || line[i] == " " { i = line.index(after: i) }
            }
            guard i < line.endIndex else { return nil }
            rest = line[line.index(after: i)...]
        } else {
            guard let space = line.firstIndex(of: " ") else { return nil }
            name = line[..<space]
            rest = line[space...]
        }
        let fields = rest.split(separator: " ")
        guard let first = fields.first, let value = Double(first) ?? Self.special(first) else { return nil }
        return MetricSample(name: String(name), labels: labels, value: value)
    }

    private static func special(_ s: Substring) -> Double? {
        switch s {
        case "+Inf": .infinity
        case "-Inf": -.infinity
        case "NaN": .nan
        default: nil
        }
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: Set<Character>) -> String {
        String(drop { set.contains($0) }.reversed().drop { set.contains($0) }.reversed())
    }
}
