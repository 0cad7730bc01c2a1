public enum WharfCoreVersion { public static let value = "0.1.0" }
