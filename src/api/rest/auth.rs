//! Authentication for REST: the `Authorized<P>` extractor reads `Authorization: Bearer <key>`,
//! authenticates the caller and checks the route's permission before the body is read (the
//! service checks the permission again).

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::problem::ApiError;
use crate::domain::{Caller, Permission};
use crate::service::Service;

/// A permission as a type, for [`Authorized`].
pub trait Needs: Send + Sync + 'static {
    const PERMISSION: Permission;
}

macro_rules! needs {
    ($($name:ident => $perm:ident),+ $(,)?) => {
        $(
            #[doc = concat!("Routes that need `Permission::", stringify!($perm), "`.")]
            pub struct $name;
            impl Needs for $name {
                const PERMISSION: Permission = Permission::$perm;
            }
        )+
    };
}

needs! {
    ReadIncidents => ReadIncidents,
    WriteIncidents => WriteIncidents,
    ReadComponents => ReadComponents,
    WriteComponents => WriteComponents,
    Admin => Admin,
}

/// The authenticated caller, known to hold `P`.
pub struct Authorized<P: Needs>(pub Caller, pub PhantomData<P>);

impl<P: Needs> FromRequestParts<Service> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Service) -> Result<Self, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let caller = service.authenticate(header).await?;
        caller.require(P::PERMISSION)?;
        Ok(Authorized(caller, PhantomData))
    }
}
