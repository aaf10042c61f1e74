/// Generates `get_ref`, `get_mut` and `into_inner` for a middleware with an `inner` field, as
/// tower-http does.
macro_rules! define_inner_service_accessors {
    () => {
        /// Gets a reference to the inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// Gets a mutable reference to the inner service.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes `self`, returning the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

pub(crate) use define_inner_service_accessors;

/// Implements [`MakeMcpService`](crate::service::MakeMcpService) for a middleware that wraps an
/// `McpService` (`Wrapper { inner, fields.. }`): each service the inner maker makes is wrapped
/// with clones of the fields, and `rebuildable` is the inner maker's, so no wrapper can forget
/// to pass it on (a cluster would otherwise stop moving the sessions it wraps). The caller's
/// module imports `MakeMcpService`, `SessionContext` and `ErrorObject`.
macro_rules! wrapping_make_service {
    ($wrapper:ident { $($field:ident),+ $(,)? }) => {
        impl<M: MakeMcpService> MakeMcpService for $wrapper<M> {
            type Service = $wrapper<M::Service>;

            fn make_service(
                &self,
                cx: &SessionContext<'_>,
            ) -> impl ::std::future::Future<
                Output = ::std::result::Result<Self::Service, ErrorObject>,
            > + Send {
                let made = self.inner.make_service(cx);
                $(let $field = self.$field.clone();)+
                async move {
                    Ok($wrapper {
                        inner: made.await?,
                        $($field,)+
                    })
                }
            }

            fn rebuildable(&self) -> bool {
                self.inner.rebuildable()
            }
        }
    };
}

pub(crate) use wrapping_make_service;
